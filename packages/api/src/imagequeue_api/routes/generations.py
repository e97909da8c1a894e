"""``/api/v1/generations``: queue an image by hand, follow it (position, ETA, SSE), cancel."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody
from litestar.response import Stream

from imagequeue_api import sse
from imagequeue_api.admission import admit
from imagequeue_api.auth import Caller, allowed_priority, provide_events_caller
from imagequeue_api.bodies import json_body
from imagequeue_api.openapi_doc import BODY, DUPLICATE, errors
from imagequeue_api.problems import Problem
from imagequeue_api.replies import IdempotencyKey, idempotent, reply
from imagequeue_api.resources import Res, Resources
from imagequeue_api.routes.characters import own_character
from imagequeue_api.schemas import (
    CreateGeneration,
    Envelope,
    EventsTokenOut,
    GenerationOut,
    is_id,
)
from imagequeue_api.views import generation_view
from imagequeue_api.webhook_requests import webhook_labels
from imagequeue_common.contracts import CharacterRef, PoseRef
from imagequeue_common.errors import JobNotFoundError
from imagequeue_common.generation import dedup_key, queue_image_generation
from imagequeue_common.queue.jobs import Job


async def own_job(resources: Resources, caller: Caller, job_id: str) -> Job:
    """The caller's job ``job_id``; 404 for another user's (as for a missing one)."""
    if not is_id(job_id):
        raise Problem(404, f"generation {job_id!r} not found")
    try:
        job = await resources.broker.ledger.get_job(job_id)
    except JobNotFoundError:
        raise Problem(404, f"generation {job_id!r} not found") from None
    if job.user != caller.user_id:
        raise Problem(404, f"generation {job_id!r} not found")
    return job


class GenerationController(Controller):
    """The seed's manual job addition, over HTTP, and everything to follow a job."""

    path = "/api/v1/generations"
    tags = ["generations"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(before_request=json_body(CreateGeneration), status_code=202,
          responses={**errors(*BODY, 403, 404, 409, 422), **DUPLICATE})  # fmt: skip
    async def create(
        self, data: JSONBody[CreateGeneration], request: Request[Any, Any, Any], caller: Caller,
        resources: Res, idempotency_key: IdempotencyKey = None,
    ) -> Envelope[GenerationOut]:  # fmt: skip
        """Queue one more image of one of the caller's characters (202). While an image of
        it in the same pose is waiting or running, that job is the answer (200), unless
        ``deduplicate`` is false."""
        del idempotency_key  # read by idempotent(); declared so the schema shows it

        async def work() -> Response[bytes]:
            view, duplicate = await queue_generation(resources, caller, data)
            return reply(200 if duplicate else 202, Envelope(view))

        return await idempotent(request, caller, resources, work)  # type: ignore[return-value]

    @get("/{job_id:str}", responses=errors(400, 404))
    async def read(
        self, job_id: FromPath[str], caller: Caller, resources: Res
    ) -> Envelope[GenerationOut]:
        """State, progress, attempts, last error, result URL, queue position and ETA."""
        job = await own_job(resources, caller, job_id)
        return Envelope(await generation_view(resources.broker.ledger, job, resources.rates))

    @get("/{job_id:str}/events", media_type=sse.MEDIA_TYPE, responses=sse.RESPONSES,
         dependencies={"caller": Provide(provide_events_caller)},
         security=[{}, {"bearer": []}])  # fmt: skip
    async def events(
        self, job_id: FromPath[str], caller: Caller, resources: Res,
        token: sse.TokenParam = None, last_event_id: sse.LastEventIdHeader = None,
    ) -> Response[bytes] | Stream:  # fmt: skip
        """Server-Sent Events: ``state`` (the whole job) on every change, ``progress`` in
        between, until the job ends; each with an ``id:``, replayed after ``Last-Event-ID``.
        A browser's ``EventSource`` passes ``?token=`` from ``POST …/events-token``. A
        reconnect to a finished job with nothing left to hear is 204 (EventSource stops)."""
        del token  # read by provide_events_caller; declared so the schema shows it
        job = await own_job(resources, caller, job_id)
        last = sse.last_event_id(last_event_id)
        if await sse.nothing_left(resources, job, last):
            return Response(b"", status_code=204, headers=sse.HEADERS)
        return Stream(sse.follow(resources, job_id, last), media_type=sse.MEDIA_TYPE,
                      headers=sse.HEADERS)  # fmt: skip

    @post("/{job_id:str}/events-token", status_code=201, responses=errors(400, 404))
    async def events_token(
        self, job_id: FromPath[str], caller: Caller, resources: Res
    ) -> Envelope[EventsTokenOut]:
        """A token good for ``GET …/events?token=`` of this job only, for
        ``EVENTS_TOKEN_TTL_S`` seconds: for browsers, whose EventSource sends no headers."""
        await own_job(resources, caller, job_id)
        tokens = resources.stream_tokens
        token = await tokens.mint(caller.user_id, job_id)
        url = f"{self.path}/{job_id}/events?{urlencode({'token': token})}"
        return Envelope(EventsTokenOut(token=token, events_url=url, expires_in=tokens.ttl_s))

    @post("/{job_id:str}/cancel", status_code=200, responses=errors(400, 404, 409))
    async def cancel(
        self, job_id: FromPath[str], caller: Caller, resources: Res
    ) -> Envelope[GenerationOut]:
        """Cancel a waiting or delayed job now, or an active one at its next progress point;
        the job stays readable, ``cancelled``. Twice is harmless; a finished job is 409."""
        return Envelope(await cancel_job(resources, caller, job_id))

    @delete("/{job_id:str}", status_code=200, responses=errors(400, 404, 409), deprecated=True)
    async def cancel_by_delete(
        self, job_id: FromPath[str], caller: Caller, resources: Res
    ) -> Envelope[GenerationOut]:
        """The same as ``POST …/cancel``, kept for clients of the first release. Deprecated:
        a DELETE says the resource is gone, but a cancelled job stays readable."""
        return Envelope(await cancel_job(resources, caller, job_id))


async def cancel_job(resources: Resources, caller: Caller, job_id: str) -> GenerationOut:
    """Cancel the caller's job ``job_id``; its view afterwards."""
    await own_job(resources, caller, job_id)
    ledger = resources.broker.ledger
    await ledger.cancel(job_id)
    return await generation_view(ledger, await ledger.get_job(job_id), resources.rates)


async def queue_generation(
    resources: Resources, caller: Caller, data: CreateGeneration
) -> tuple[GenerationOut, bool]:
    """Queue an image of ``data.character_id`` (in its own pose unless another is given);
    the job, and whether it was the one already queued for that character and pose."""
    hook = await webhook_labels(resources, caller, data.webhook, data.webhook_events)
    character = await own_character(resources, caller, data.character_id)
    pose = await resources.poses.get(data.pose_id or character.pose_id)
    priority = allowed_priority(caller, data.priority)
    broker = resources.broker
    if broker.settings.ai_generation_enabled:
        key = dedup_key(caller.user_id, character.id, pose.id) if data.deduplicate else ""
        await admit(resources, caller.user_id, priority, key)
    queued = await queue_image_generation(
        broker, CharacterRef(id=character.id, name=character.name[:120]),
        PoseRef(id=pose.id, name=pose.name), caller.user_id, priority,
        start_deadline_s=data.start_deadline_seconds, deduplicate=data.deduplicate,
        webhook=hook,
    )  # fmt: skip
    if not queued.duplicate:
        await resources.store.set_image_job(character.id, queued.job_id)
    job = await broker.ledger.get_job(queued.job_id)
    return await generation_view(broker.ledger, job, resources.rates), queued.duplicate
