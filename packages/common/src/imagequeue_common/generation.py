"""The seed's public helpers: ``add_image_generation_job`` and ``get_queue_stats``."""

from __future__ import annotations

import logging
import time
import uuid

import msgspec

from imagequeue_common.contracts import (
    GENERATE_IMAGE_TASK,
    CharacterRef,
    GenerateImagePayload,
    PoseRef,
    Priority,
)
from imagequeue_common.errors import GenerationDisabledError, InvalidJobError
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.labels import ENGINE_LABELS
from imagequeue_common.queue.ledger import Enqueued

log = logging.getLogger("imagequeue.jobs")


async def add_image_generation_job(
    broker: EngineBroker,
    character: CharacterRef,
    pose: PoseRef,
    user_id: str,
    priority: Priority | str = Priority.NORMAL,
    *,
    quality: str | None = None,
    job_id: str | None = None,
) -> str:
    """Queue one image for ``character`` in ``pose``; returns the job id.

    Raises :class:`InvalidJobError` for a bad priority or payload (nothing is queued),
    :class:`DuplicateJobError` when ``job_id`` is taken, and
    :class:`GenerationDisabledError` when ``AI_GENERATION_ENABLED`` is false.
    """
    queued = await queue_image_generation(
        broker, character, pose, user_id, priority, quality=quality, job_id=job_id
    )
    return queued.job_id


async def queue_image_generation(
    broker: EngineBroker,
    character: CharacterRef,
    pose: PoseRef,
    user_id: str,
    priority: Priority | str = Priority.NORMAL,
    *,
    quality: str | None = None,
    job_id: str | None = None,
) -> Enqueued:
    """:func:`add_image_generation_job`, answering with the job's state and place in the
    queue as well (read in the same Redis call)."""
    if not broker.settings.ai_generation_enabled:
        raise GenerationDisabledError
    try:
        level = Priority.parse(priority)
        payload = msgspec.to_builtins(
            GenerateImagePayload(
                character_id=character.id,
                character_name=character.name,
                pose_id=pose.id,
                pose_name=pose.name,
                user_id=user_id,
                quality=quality or broker.settings.ai_generation_quality,  # type: ignore[arg-type]
            )
        )
        msgspec.convert(payload, GenerateImagePayload)  # the struct's constraints
    except (ValueError, msgspec.ValidationError) as exc:
        raise InvalidJobError(str(exc)) from None
    job_id = job_id or new_job_id(character.id)
    labels = {"priority": level.value, "user_id": user_id, "ref": character.id,
              **ENGINE_LABELS}  # fmt: skip
    queued = await broker.submit(GENERATE_IMAGE_TASK, job_id, [payload], labels)
    # Names, not prompts: the character's description and traits stay out of logs.
    log.info(
        "Added image generation job %s to queue (priority: %s)\n   Character: %s, Pose: %s",
        job_id, level.value, character.name, pose.name,
        extra={"job_id": job_id, "character_id": character.id, "pose_id": pose.id},
    )  # fmt: skip
    return queued


def new_job_id(character_id: str = "") -> str:
    """``img-<character id prefix>-<unix ts>-<random>`` (the seed: ``img-693db123-1702567890``)."""
    prefix = character_id[:8] or uuid.uuid4().hex[:8]
    return f"img-{prefix}-{int(time.time())}-{uuid.uuid4().hex[:8]}"


async def get_queue_stats(broker: EngineBroker) -> dict[str, int]:
    """The seed's ``{waiting, active, completed, failed, delayed, total}``, exact."""
    stats = await broker.ledger.stats()
    return {
        "waiting": stats.waiting,
        "active": stats.active,
        "completed": stats.completed,
        "failed": stats.failed,
        "delayed": stats.delayed,
        "total": stats.total,
    }
