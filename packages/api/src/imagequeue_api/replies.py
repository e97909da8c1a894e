"""JSON answers and ``Idempotency-Key`` handling for POST routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.params import HeaderParameter

from imagequeue_api.apikeys import ApiKey
from imagequeue_api.idempotency import IdempotencyBusyError, Mismatch, Replay, validate_key
from imagequeue_api.problems import Problem
from imagequeue_api.resources import Resources

JSON = "application/json"
_REPEAT = "Repeat a POST safely: the same key with the same body answers as the first time."
IdempotencyKey = Annotated[str | None, HeaderParameter(
    name="Idempotency-Key", description=_REPEAT, min_length=1, max_length=255,
    pattern=r"^[\x20-\x7e]+$",  # as idempotency.validate_key checks it
)]  # fmt: skip


def reply(status: int, payload: object) -> Response[bytes]:
    """``payload`` encoded by msgspec with ``status``."""
    return Response(msgspec.json.encode(payload), status_code=status, media_type=JSON)


async def idempotent(
    request: Request[Any, Any, Any],
    caller: ApiKey,
    resources: Resources,
    work: Callable[[], Awaitable[Response[bytes]]],
) -> Response[bytes]:
    """Run ``work`` once per (caller, ``Idempotency-Key``, body); replay its answer after.

    The same key with another body is 422; without the header, ``work`` simply runs.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return await work()
    try:
        validate_key(key)
    except ValueError as exc:
        raise Problem(400, f"Idempotency-Key: {exc}", slug="validation") from None
    store = resources.idempotency
    try:
        begun = await store.begin(caller.user_id, key, await request.body())
    except IdempotencyBusyError:
        raise Problem(409, "A request with this Idempotency-Key is still running.") from None
    if isinstance(begun, Replay):
        return Response(begun.body, status_code=begun.status, media_type=begun.content_type,
                        headers={"Idempotent-Replayed": "true"})  # fmt: skip
    if isinstance(begun, Mismatch):
        raise Problem(422, "This Idempotency-Key was used with a different body.",
                      slug="idempotency-mismatch")  # fmt: skip
    try:
        response = await work()
    except BaseException:
        await store.abandon(caller.user_id, key)
        raise
    body = response.content if isinstance(response.content, bytes) else b""
    await store.complete(caller.user_id, key, response.status_code or 200, body, JSON)
    return response
