"""The seed's public helpers: ``add_image_generation_job`` and ``get_queue_stats``."""

from __future__ import annotations

import hashlib
import logging
import secrets
import time

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
    start_deadline_s: float | None = None,
    deduplicate: bool = True,
    webhook: dict[str, str] | None = None,
) -> str:
    """Queue one image for ``character`` in ``pose``; returns the job id.

    While an image of the same character and pose is still waiting, delayed or running,
    that job's id is returned and nothing is queued, unless ``deduplicate`` is false. A job
    not started within ``start_deadline_s`` seconds (None: ``START_DEADLINE_S`` of its
    priority; 0: no deadline) expires without running. ``webhook``: the labels that ask
    for its events to be delivered (``webhook``, ``webhook_events``, ``webhook_key``; the
    API checks them, see ``imagequeue_api.webhook_requests``).

    Raises :class:`InvalidJobError` for a bad priority, deadline or payload (nothing is
    queued), :class:`DuplicateJobError` when ``job_id`` is taken, :class:`UserQuotaError`
    and :class:`QueueFullError` when the user or the queue has no room, and
    :class:`GenerationDisabledError` when ``AI_GENERATION_ENABLED`` is false.
    """
    queued = await queue_image_generation(
        broker, character, pose, user_id, priority, quality=quality, job_id=job_id,
        start_deadline_s=start_deadline_s, deduplicate=deduplicate, webhook=webhook,
    )  # fmt: skip
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
    start_deadline_s: float | None = None,
    deduplicate: bool = True,
    webhook: dict[str, str] | None = None,
) -> Enqueued:
    """:func:`add_image_generation_job`, answering with the job's state and place in the
    queue as well (read in the same Redis call); ``duplicate`` when it is the job already
    queued for the same character and pose."""
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
    if start_deadline_s is None:
        start_deadline_s = broker.settings.start_deadline_ms(level.value) / 1000
    job_id = job_id or new_job_id(character.id)
    labels = {"priority": level.value, "user_id": user_id, "ref": character.id,
              "start_deadline": str(start_deadline_s), **ENGINE_LABELS}  # fmt: skip
    labels.update(webhook or {})
    if deduplicate:
        labels["dedup_key"] = dedup_key(user_id, character.id, pose.id)
    queued = await broker.submit(GENERATE_IMAGE_TASK, job_id, [payload], labels)
    if queued.duplicate:
        log.info("Image job %s of character %s in pose %s is already queued",
                 queued.job_id, character.name, pose.name,
                 extra={"job_id": queued.job_id, "character_id": character.id})  # fmt: skip
        return queued
    # Names, not prompts: the character's description and traits stay out of logs.
    log.info(
        "Added image generation job %s to queue (priority: %s)\n   Character: %s, Pose: %s",
        job_id, level.value, character.name, pose.name,
        extra={"job_id": job_id, "character_id": character.id, "pose_id": pose.id},
    )  # fmt: skip
    return queued


def dedup_key(user_id: str, character_id: str, pose_id: str) -> str:
    """The key under which one user's image of a character in a pose is queued once at a
    time: a digest, so that any ids fit the 64 characters of a label."""
    text = "\x00".join((user_id, character_id, pose_id))
    return "img:" + hashlib.sha256(text.encode()).hexdigest()[:40]


def new_job_id(character_id: str = "") -> str:
    """``img-<character id prefix>-<unix ts>-<random>`` (the seed: ``img-693db123-1702567890``)."""
    prefix = character_id[:8] or secrets.token_hex(4)
    return f"img-{prefix}-{int(time.time())}-{secrets.token_hex(4)}"


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
