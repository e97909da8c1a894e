"""``/api/v1/webhook-secret``: the caller's key's webhook signing secret."""

from __future__ import annotations

import time

from litestar import post
from litestar.params import JSONBody

from imagequeue_api.auth import Caller
from imagequeue_api.bodies import json_body
from imagequeue_api.openapi_doc import BODY, errors
from imagequeue_api.problems import Problem
from imagequeue_api.resources import Res
from imagequeue_api.schemas import Envelope, RotateWebhookSecret, WebhookSecretOut


@post("/api/v1/webhook-secret/rotate", before_request=json_body(RotateWebhookSecret),
      status_code=201, tags=["webhooks"], responses=errors(*BODY, 409))  # fmt: skip
async def rotate_webhook_secret(
    data: JSONBody[RotateWebhookSecret], caller: Caller, resources: Res
) -> Envelope[WebhookSecretOut]:
    """A new signing secret for the caller's key, shown this once; the old one signs
    beside it for ``graceSeconds`` (so a receiver can switch without losing a delivery)."""
    now, grace = time.time(), int(data.grace_seconds)
    try:
        secret = await resources.keys.webhook_secrets.rotate(caller.key_id, grace, now)
    except KeyError:  # API_DEV_KEY and an events token are no stored key
        raise Problem(
            409,
            "This key has no webhook secret: use a key made by `imagequeue-api keys create`.",
            slug="no-webhook-secret",
        ) from None
    return Envelope(WebhookSecretOut(secret, int(now + grace)))
