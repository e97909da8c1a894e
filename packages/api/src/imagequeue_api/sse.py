"""Server-Sent Events of one job, as browsers' ``EventSource`` and SSE libraries expect them.

- Every event carries ``id:`` — the queue stream's entry id — so a client that reconnects
  with ``Last-Event-ID`` is sent the progress it missed, then the job's state now.
- Keep-alives are lone comment lines: no client sees an empty ``message`` event.
- A finished job's stream ends after its final state; the reconnect that follows (the
  browser's) is answered 204 once nothing is left to hear, which makes ``EventSource``
  stop for good instead of reconnecting every few seconds forever.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec
from litestar.openapi import ResponseSpec
from litestar.params import HeaderParameter, QueryParameter

from imagequeue_api.events import Event, parse_id
from imagequeue_api.openapi_doc import errors
from imagequeue_api.resources import Resources
from imagequeue_api.schemas import GenerationOut, ProgressOut
from imagequeue_api.views import generation_view
from imagequeue_common.errors import JobNotFoundError
from imagequeue_common.queue.jobs import Job

MEDIA_TYPE = "text/event-stream"
TokenParam = Annotated[
    str | None,
    QueryParameter(
        description="A token from POST …/events-token, instead of the API key (for browsers)."
    ),
]
LastEventIdHeader = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        description=(
            "Resume after this event id (browsers send it by themselves when they reconnect)."
        ),
    ),
]
EVENT_SCHEMA = {
    "type": "object",
    "required": ["event", "data", "id"],
    "properties": {"id": {"type": "string", "pattern": r"^\d+-\d+$"}, "retry": {"type": "integer"}},
    "oneOf": [
        {"properties": {"event": {"const": name}, "data": {
            "type": "string", "contentMediaType": "application/json",
            "contentSchema": {"$ref": f"#/components/schemas/{struct.__name__}"}}}}
        for name, struct in (("state", GenerationOut), ("progress", ProgressOut))
    ],
}  # fmt: skip
"""One event of the stream (as OpenAPI 3.2's ``itemSchema`` and schemathesis read it): its
``data`` is one line of JSON, a Generation for ``state``, a ProgressOut for ``progress``."""
RESPONSES = {
    200: ResponseSpec(str, media_type=MEDIA_TYPE, generate_examples=False, description=(
        "The stream: `id:`, `event: state` (a Generation) or `event: progress` "
        "(`{id, progress, message}`), `data:` one line of JSON; `: keep-alive` comments.")),
    204: ResponseSpec(None, description="A reconnect to a finished job that heard it all."),
    **errors(400, 404),
}  # fmt: skip
# Any origin may read a stream: the credential is the job-scoped token in its URL (or a
# header, which no cross-site page can send without a preflight we do not answer).
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
           "Access-Control-Allow-Origin": "*"}  # fmt: skip
# A comment line, and no blank line after it: a blank line ends an event block, and some
# clients (httpx-sse 0.4) dispatch an empty event for it once any event carried an id.
KEEPALIVE = b": keep-alive\n"
RETRY_MS = 3000


def last_event_id(header: str | None) -> str | None:
    """The ``Last-Event-ID`` a client sent, when it is one of our ids (else: none)."""
    text = (header or "").strip()
    return text if parse_id(text) is not None else None


async def nothing_left(resources: Resources, job: Job, last: str | None) -> bool:
    """True for a reconnect to a finished job that has heard everything (answer 204)."""
    if last is None or not job.state.is_final:
        return False
    return not await resources.events.replay(job.id, last)


async def follow(resources: Resources, job_id: str, last: str | None) -> AsyncIterator[bytes]:
    """The job's events from ``last`` (or now) until it ends.

    Subscribed before anything is read, so nothing falls between the replay, the first
    state and the live events; entries seen twice that way are sent once.
    """
    hub, keepalive_s = resources.events, resources.settings.events_keepalive_s
    async with hub.subscribe(job_id) as queue:
        # An id from the future (another process's, or made up) must not hide live events.
        seen = min(last, hub.position, key=_order) if last else hub.position
        # The reconnect delay rides on the first event: a block of its own would be an
        # empty event to some clients (httpx-sse), though browsers skip it.
        retry = b"retry: %d\n" % RETRY_MS
        for entry_id, fields in await hub.replay(job_id, last) if last else []:
            seen = entry_id
            if fields.get("event") == "progress":
                yield retry + _progress(entry_id, job_id, fields)
                retry = b""
        try:
            job = await resources.broker.ledger.get_job(job_id)
            yield retry + _state(seen, await _view(resources, job))
            while not job.state.is_final:
                try:
                    entry_id, fields = await asyncio.wait_for(queue.get(), keepalive_s)
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if _order(entry_id) <= _order(seen):
                    continue  # replayed already, or older than the state sent
                seen = entry_id
                if fields.get("event") == "progress":
                    yield _progress(entry_id, job_id, fields)
                    continue
                job = await resources.broker.ledger.get_job(job_id)
                yield _state(entry_id, await _view(resources, job))
        except JobNotFoundError:
            return  # removed while followed: its next connection is a 404


def encode(event: str, data: bytes, event_id: str) -> bytes:
    """One event on the wire (``data`` is one line of JSON)."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (event_id.encode(), event.encode(), data)


def _progress(entry_id: str, job_id: str, fields: Event) -> bytes:
    percent = min(max(int(fields.get("progress", 0) or 0), 0), 100)
    data = ProgressOut(id=job_id, progress=percent, message=fields.get("msg", ""))
    return encode("progress", msgspec.json.encode(data), entry_id)


def _state(entry_id: str, view: GenerationOut) -> bytes:
    return encode("state", msgspec.json.encode(view), entry_id)


async def _view(resources: Resources, job: Job) -> GenerationOut:
    return await generation_view(resources.broker.ledger, job, resources.rates)


def _order(entry_id: str) -> tuple[int, int]:
    return parse_id(entry_id) or (0, 0)
