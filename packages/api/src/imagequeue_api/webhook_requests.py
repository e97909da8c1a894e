"""A request's ``webhook`` and ``webhookEvents``, checked before anything is stored."""

from __future__ import annotations

import time
from collections.abc import Sequence

from imagequeue_api.auth import Caller
from imagequeue_api.problems import Problem
from imagequeue_api.resources import Resources
from imagequeue_common.webhooks import FINAL_EVENTS, url_problem


async def webhook_labels(
    resources: Resources, caller: Caller, url: str | None, events: Sequence[str] | None
) -> dict[str, str]:
    """The job labels that ask for ``url`` to hear ``events`` (none without a URL). The
    body's schema has refused a malformed URL already (400); a 422 for one these settings
    refuse (http, a private address) and for events without a URL, a 409 when the caller's
    key has no secret to sign with or the caller's endpoint is disabled."""
    if url is None:
        if events is not None:
            raise _refused("webhookEvents", "webhookEvents needs a webhook URL")
        return {}
    settings = resources.settings
    problem = url_problem(url, allow_http=settings.webhook_allow_http,
                          private_hosts=settings.webhook_private_host_list)  # fmt: skip
    if problem is not None:
        raise _refused("webhook", problem)
    if not await resources.keys.webhook_secrets.signing(caller.key_id):
        detail = ("This key has no webhook secret to sign deliveries with: use a key made by "
                  "`imagequeue-api keys create`.")  # fmt: skip
        raise Problem(409, detail, slug="no-webhook-secret")
    endpoint = await resources.webhooks.endpoint(caller.user_id, url)
    if endpoint is not None and endpoint.disabled_at is not None:
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(endpoint.disabled_at))
        detail = (f"This webhook endpoint was disabled at {since}, after every delivery "
                  f"failed: {endpoint.disabled_why}. Enable it again with "
                  "POST /api/v1/webhooks/endpoints/enable.")  # fmt: skip
        raise Problem(409, detail, slug="webhook-disabled")
    names = FINAL_EVENTS if events is None else tuple(dict.fromkeys(events))
    return {"webhook": url, "webhook_events": ",".join(names), "webhook_key": caller.key_id}


def _refused(path: str, message: str) -> Problem:
    return Problem(422, message, slug="webhook-refused",
                   errors=[{"path": path, "message": message}])  # fmt: skip
