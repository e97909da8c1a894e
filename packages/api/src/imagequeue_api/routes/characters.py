"""``/api/v1/characters``: create (queues the image at once), read, list, delete."""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from imagequeue_api.admission import admit
from imagequeue_api.auth import Caller, allowed_priority
from imagequeue_api.bodies import json_body
from imagequeue_api.openapi_doc import BODY, errors
from imagequeue_api.problems import Problem
from imagequeue_api.replies import IdempotencyKey, idempotent, reply
from imagequeue_api.resources import Res, Resources
from imagequeue_api.schemas import (
    CharacterOut,
    CreateCharacter,
    Envelope,
    ImageJob,
    Page,
    is_id,
)
from imagequeue_api.views import character_view, queued_character_view
from imagequeue_api.webhook_requests import webhook_labels
from imagequeue_common.contracts import CharacterRef, PoseRef
from imagequeue_common.errors import ImageQueueError, JobNotFoundError, JobStateError
from imagequeue_common.generation import new_job_id, queue_image_generation
from imagequeue_common.store import Character, NewCharacter

log = logging.getLogger("imagequeue.api")


async def own_character(resources: Resources, caller: Caller, character_id: str) -> Character:
    """The caller's character ``character_id``; 404 for another user's (as for a missing one)."""
    if not is_id(character_id):  # a NUL or a bad byte would not even reach PostgreSQL
        raise Problem(404, f"character {character_id!r} not found")
    character = await resources.store.get_character(character_id)
    if character.user_id != caller.user_id:
        raise Problem(404, f"character {character_id!r} not found")
    return character


class CharacterController(Controller):
    """The seed's character routes."""

    path = "/api/v1/characters"
    tags = ["characters"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(before_request=json_body(CreateCharacter), status_code=201,
          responses=errors(*BODY, 403, 409, 422))  # fmt: skip
    async def create(
        self, data: JSONBody[CreateCharacter], request: Request[Any, Any, Any], caller: Caller,
        resources: Res, idempotency_key: IdempotencyKey = None,
    ) -> Envelope[CharacterOut]:  # fmt: skip
        """Create a character and queue its image in the same request (answers at once)."""
        del idempotency_key  # read by idempotent(); declared so the schema shows it

        async def work() -> Response[bytes]:
            return reply(201, Envelope(await create_character(resources, caller, data)))

        return await idempotent(request, caller, resources, work)  # type: ignore[return-value]

    @get("/{character_id:str}", responses=errors(400, 404))
    async def read(
        self, character_id: FromPath[str], caller: Caller, resources: Res
    ) -> Envelope[CharacterOut]:
        """One of the caller's characters, with its image job's state, position and ETA."""
        character = await own_character(resources, caller, character_id)
        return Envelope(await character_view(resources.broker.ledger, character, resources.rates))

    @get(responses=errors(400))
    async def list_own(
        self,
        caller: Caller,
        resources: Res,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
    ) -> Envelope[Page[CharacterOut]]:
        """The caller's characters, newest first."""
        store, ledger = resources.store, resources.broker.ledger
        found = await store.list_characters(caller.user_id, limit=limit, offset=offset)
        total = await store.count_characters(caller.user_id)
        items = [await character_view(ledger, c, resources.rates) for c in found]
        return Envelope(Page(items=items, total=total, limit=limit, offset=offset))

    @delete("/{character_id:str}", status_code=204, responses=errors(400, 404))
    async def remove(self, character_id: FromPath[str], caller: Caller, resources: Res) -> None:
        """Delete a character; its pending image job is cancelled."""
        character = await own_character(resources, caller, character_id)
        if character.image_job_id:
            with contextlib.suppress(JobNotFoundError, JobStateError):
                await resources.broker.ledger.cancel(character.image_job_id)
        await resources.store.delete_character(character.id)


async def create_character(
    resources: Resources, caller: Caller, data: CreateCharacter
) -> CharacterOut:
    """Store the character and queue its image; never one without the other."""
    store, broker = resources.store, resources.broker
    pose = await resources.poses.get(data.personality.pose_id)
    priority = allowed_priority(caller, data.priority)
    enabled = resources.settings.ai_generation_enabled
    personality = msgspec.to_builtins(data.personality)
    job_id = new_job_id() if enabled else None
    hook = await webhook_labels(resources, caller, data.webhook, data.webhook_events)
    if enabled:
        await admit(resources, caller.user_id, priority)  # before anything is stored
    character = await store.create_character(
        NewCharacter(user_id=caller.user_id, name=data.name.strip(), pose_id=pose.id,
                     description=data.description, personality=personality,
                     image_job_id=job_id)
    )  # fmt: skip
    if job_id is None:
        view = await character_view(broker.ledger, character, resources.rates)
        return msgspec.structs.replace(view, image_job=ImageJob("", "disabled"))
    try:
        queued = await queue_image_generation(
            broker, CharacterRef(id=character.id, name=character.name[:120]),
            PoseRef(id=pose.id, name=pose.name), caller.user_id, priority, job_id=job_id,
            start_deadline_s=data.start_deadline_seconds, webhook=hook,
        )  # fmt: skip
    except BaseException:
        # No character without its job: take it back (best effort if the store is down too).
        try:
            await store.delete_character(character.id)
        except ImageQueueError:
            log.exception("could not remove character %s after its job failed", character.id)
        raise
    return await queued_character_view(character, queued, resources.rates)
