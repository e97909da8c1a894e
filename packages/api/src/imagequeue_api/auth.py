"""Who is calling: ``Authorization: Bearer <key>`` → user and tier, plus the per-user rate.

Every ``/api/v1`` route depends on :func:`provide_caller`. A missing or wrong key is 401
with ``WWW-Authenticate: Bearer``; past ``API_USER_RPS`` requests in a second, 429 with
``Retry-After``. ``API_DEV_KEY`` (set by ``just up``) is a premium user ``dev``. The events
route also takes a job-scoped ``?token=`` (``imagequeue_api.streamtokens``).
"""

from __future__ import annotations

import hmac
import math
from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency

from imagequeue_api.apikeys import ApiKey
from imagequeue_api.problems import Problem
from imagequeue_api.resources import Res, Resources
from imagequeue_common.contracts import Priority

Caller = NamedDependency[ApiKey]
"""A handler parameter ``caller: Caller`` receives the authenticated :class:`ApiKey`."""
_RANK = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}


def provide_resources(state: State) -> Resources:
    """The process's :class:`Resources` (opened by the lifespan)."""
    resources: Resources = state.resources
    return resources


async def provide_caller(request: Request[Any, Any, Any], resources: Res) -> ApiKey:
    """The authenticated caller; raises 401 or 429 problems."""
    presented = _bearer(request.headers.get("authorization", ""))
    caller = await _authenticate(presented, resources)
    if caller is None:
        raise Problem(
            401,
            "A valid API key is required: Authorization: Bearer <key>.",
            headers={"WWW-Authenticate": 'Bearer realm="imagequeue"'},
        )
    await _within_rate(caller.user_id, resources)
    return caller


async def provide_events_caller(request: Request[Any, Any, Any], resources: Res) -> ApiKey:
    """The events route's caller: an API key, or a job-scoped ``?token=`` (browsers)."""
    token = request.query_params.get("token")
    if token is None or request.headers.get("authorization"):
        return await provide_caller(request, resources)
    job_id = str(request.path_params.get("job_id", ""))
    user_id = await resources.stream_tokens.user_for(token, job_id)
    if user_id is None:
        raise Problem(
            401,
            "This events token is unknown, expired or for another job; "
            "mint a new one with POST /api/v1/generations/{id}/events-token.",
            headers={"WWW-Authenticate": 'Bearer realm="imagequeue"'},
        )
    await _within_rate(user_id, resources)
    return ApiKey("events-token", user_id, "regular", "events token", datetime.now(UTC))


async def _within_rate(user_id: str, resources: Resources) -> None:
    wait_s = await resources.limiter.hit(user_id)
    if wait_s is not None:
        raise Problem(
            429,
            f"More than {resources.settings.api_user_rps} requests per second.",
            slug="rate-limited",
            headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
        )


def allowed_priority(caller: ApiKey, asked: str | None) -> Priority:
    """The caller's tier priority, or the lower one they asked for (never a higher one)."""
    tier = caller.priority
    if asked is None:
        return tier
    wanted = Priority.parse(asked)
    if _RANK[wanted] < _RANK[tier]:
        raise Problem(
            403,
            f"Your tier ({caller.tier}) allows priority {tier.value} or lower, not {wanted.value}.",
            slug="priority-not-allowed",
        )
    return wanted


async def _authenticate(presented: str, resources: Resources) -> ApiKey | None:
    if not presented:
        return None
    dev = resources.settings.api_dev_key
    if dev and hmac.compare_digest(presented.encode(), dev.encode()):
        return ApiKey("dev", "dev", "premium", "API_DEV_KEY", datetime.fromtimestamp(0, UTC))
    return await resources.keys.authenticate(presented)


def _bearer(header: str) -> str:
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
