"""The seed's public helpers: ``add_image_generation_job`` and ``get_queue_stats``."""

from __future__ import annotations

import logging
import time
import uuid

import msgspec
from taskiq.exceptions import SendTaskError
from taskiq.kicker import AsyncKicker

from imagequeue_common.contracts import (
    GENERATE_IMAGE_TASK,
    CharacterRef,
    GenerateImagePayload,
    PoseRef,
    Priority,
)
from imagequeue_common.errors import GenerationDisabledError, ImageQueueError, InvalidJobError
from imagequeue_common.queue.broker import EngineBroker

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
    if not broker.settings.ai_generation_enabled:
        raise GenerationDisabledError
    try:
        level = Priority.parse(priority)
        payload = GenerateImagePayload(
            character_id=character.id,
            character_name=character.name,
            pose_id=pose.id,
            pose_name=pose.name,
            user_id=user_id,
            quality=quality or broker.settings.ai_generation_quality,  # type: ignore[arg-type]
        )
        payload = msgspec.convert(msgspec.to_builtins(payload), GenerateImagePayload)
    except (ValueError, msgspec.ValidationError) as exc:
        raise InvalidJobError(str(exc)) from None
    job_id = job_id or new_job_id(character.id)
    kicker: AsyncKicker[..., object] = AsyncKicker(
        GENERATE_IMAGE_TASK,
        broker,
        labels={"priority": level.value, "user_id": user_id, "ref": character.id},
    )
    try:
        await kicker.with_task_id(job_id).kiq(msgspec.to_builtins(payload))
    except SendTaskError as exc:
        if isinstance(exc.__cause__, ImageQueueError):
            raise exc.__cause__ from None
        raise
    # Names, not prompts: the character's description and traits stay out of logs.
    log.info(
        "Added image generation job %s to queue (priority: %s)\n   Character: %s, Pose: %s",
        job_id, level.value, character.name, pose.name,
        extra={"job_id": job_id, "character_id": character.id, "pose_id": pose.id},
    )  # fmt: skip
    return job_id


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
