"""``/api/v1/generations``: queue an image by hand, follow it (position, ETA, SSE), cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, JSONBody
from litestar.response import ServerSentEvent, ServerSentEventMessage

from imagequeue_api.auth import Caller, allowed_priority
from imagequeue_api.bodies import json_body
from imagequeue_api.problems import Problem
from imagequeue_api.replies import idempotent, reply
from imagequeue_api.resources import Res, Resources
from imagequeue_api.routes.characters import own_character
from imagequeue_api.schemas import CreateGeneration, Envelope, GenerationOut, is_id
from imagequeue_api.views import generation_view
from imagequeue_common.contracts import CharacterRef, PoseRef
from imagequeue_common.errors import JobNotFoundError
from imagequeue_common.generation import add_image_generation_job
from imagequeue_common.queue.jobs import Job

KEEPALIVE_S = 15.0


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

    @post(before_request=json_body(CreateGeneration), status_code=202)
    async def create(
        self, data: JSONBody[CreateGeneration], request: Request[Any, Any, Any], caller: Caller,
        resources: Res,
    ) -> Envelope[GenerationOut]:  # fmt: skip
        """Queue one more image of one of the caller's characters."""

        async def work() -> Response[bytes]:
            return reply(202, Envelope(await queue_generation(resources, caller, data)))

        return await idempotent(request, caller, resources, work)  # type: ignore[return-value]

    @get("/{job_id:str}")
    async def read(
        self, job_id: FromPath[str], caller: Caller, resources: Res
    ) -> Envelope[GenerationOut]:
        """State, progress, attempts, last error, result URL, queue position and ETA."""
        job = await own_job(resources, caller, job_id)
        return Envelope(await generation_view(resources.broker.ledger, job, resources.rates))

    @get("/{job_id:str}/events")
    async def events(
        self, job_id: FromPath[str], caller: Caller, resources: Res
    ) -> ServerSentEvent:
        """Server-Sent Events: ``state`` (the whole job) on every change, ``progress`` in
        between, until the job ends."""
        await own_job(resources, caller, job_id)
        return ServerSentEvent(follow(resources, job_id))

    @delete("/{job_id:str}", status_code=200)
    async def cancel(
        self, job_id: FromPath[str], caller: Caller, resources: Res
    ) -> Envelope[GenerationOut]:
        """Cancel a waiting or delayed job now, or an active one at its next progress point."""
        await own_job(resources, caller, job_id)
        ledger = resources.broker.ledger
        await ledger.cancel(job_id)
        return Envelope(
            await generation_view(ledger, await ledger.get_job(job_id), resources.rates)
        )


async def queue_generation(
    resources: Resources, caller: Caller, data: CreateGeneration
) -> GenerationOut:
    """Queue an image of ``data.character_id`` (in its own pose unless another is given)."""
    character = await own_character(resources, caller, data.character_id)
    pose = await resources.poses.get(data.pose_id or character.pose_id)
    priority = allowed_priority(caller, data.priority)
    broker = resources.broker
    job_id = await add_image_generation_job(
        broker, CharacterRef(id=character.id, name=character.name[:120]),
        PoseRef(id=pose.id, name=pose.name), caller.user_id, priority,
    )  # fmt: skip
    await resources.store.set_image_job(character.id, job_id)
    return await generation_view(
        broker.ledger, await broker.ledger.get_job(job_id), resources.rates
    )


async def follow(resources: Resources, job_id: str) -> AsyncIterator[ServerSentEventMessage]:
    """The job's events from now until it ends (subscribed before the first read: no gap)."""
    ledger = resources.broker.ledger
    async with resources.events.subscribe(job_id) as queue:
        job = await ledger.get_job(job_id)
        yield _state(await generation_view(ledger, job, resources.rates))
        while not job.state.is_final:
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ServerSentEventMessage(comment="keep-alive")
                continue
            if event.get("event") == "progress":
                data = {"id": job_id, "progress": int(event.get("progress", 0)),
                        "message": event.get("msg", "")}  # fmt: skip
                yield ServerSentEventMessage(
                    data=msgspec.json.encode(data).decode(), event="progress"
                )
                continue
            job = await ledger.get_job(job_id)
            yield _state(await generation_view(ledger, job, resources.rates))


def _state(view: GenerationOut) -> ServerSentEventMessage:
    return ServerSentEventMessage(data=msgspec.json.encode(view).decode(), event="state")
