"""``/api/v1/webhook-secret`` and ``/api/v1/webhooks``: the caller's key's signing secret,
the caller's recent deliveries and the health of the caller's endpoints."""

from __future__ import annotations

import time
from typing import Annotated

from litestar import Controller, get, post
from litestar.params import JSONBody, QueryParameter

from imagequeue_api.auth import Caller
from imagequeue_api.bodies import json_body
from imagequeue_api.openapi_doc import BODY, errors
from imagequeue_api.problems import Problem
from imagequeue_api.resources import Res
from imagequeue_api.routes.generations import own_job
from imagequeue_api.schemas import Envelope, RotateWebhookSecret, WebhookSecretOut
from imagequeue_api.webhook_schemas import DeliveryOut, EnableEndpoint, EndpointOut
from imagequeue_api.webhook_views import deliveries_view, endpoint_view


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


class WebhookController(Controller):
    """The caller's deliveries and endpoints."""

    path = "/api/v1/webhooks"
    tags = ["webhooks"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("/deliveries", responses=errors(400, 404))
    async def deliveries(
        self, caller: Caller, resources: Res,
        job_id: Annotated[str | None, QueryParameter(name="jobId", max_length=64)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
    ) -> Envelope[list[DeliveryOut]]:  # fmt: skip
        """The caller's deliveries, newest first (of one of the caller's jobs with
        ``jobId``): state, attempts with their status codes, the next attempt."""
        if job_id is not None:
            await own_job(resources, caller, job_id)  # 404 for another user's
        return Envelope(await deliveries_view(resources, caller.user_id, job_id, limit))

    @get("/endpoints", responses=errors(400))
    async def endpoints(self, caller: Caller, resources: Res) -> Envelope[list[EndpointOut]]:
        """The caller's receiver URLs that have failed recently, disabled ones first, with
        why."""
        found = await resources.webhooks.endpoints(caller.user_id)
        return Envelope([endpoint_view(e) for e in found])

    @post("/endpoints/enable", before_request=json_body(EnableEndpoint), status_code=200,
          responses=errors(*BODY))  # fmt: skip
    async def enable(
        self, data: JSONBody[EnableEndpoint], caller: Caller, resources: Res
    ) -> Envelope[EndpointOut]:
        """Enable a disabled endpoint of the caller's again, its failures forgotten (an
        endpoint that is not disabled stays as it is: enabling twice is harmless)."""
        await resources.webhooks.enable(caller.user_id, data.url)
        endpoint = await resources.webhooks.endpoint(caller.user_id, data.url)
        return Envelope(EndpointOut(data.url, None, "", None, "") if endpoint is None
                        else endpoint_view(endpoint))  # fmt: skip
