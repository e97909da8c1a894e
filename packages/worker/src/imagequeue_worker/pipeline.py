"""A job's life inside the worker: the seed's "AI API → image → disk → character".

Progress points are the seed's: 10 % started, 80 % image received, 100 % saved. The
character gets exactly one image per job: a run that finds its job's image already recorded
(an earlier run saved it, then stalled or failed) finishes at once, and when two runs race,
the store keeps the first URL and the loser deletes its file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imagequeue_common.store import CharacterStore

import asyncio
import logging
import math
import time

from imagequeue_common.assets import AssetStore, SavedImage
from imagequeue_common.contracts import GenerateImagePayload, GenerateImageResult
from imagequeue_common.errors import (
    CharacterNotFoundError,
    InvalidImageError,
    JobCancelledError,
    PoseNotFoundError,
    TerminalJobError,
    UpstreamRetryableError,
    UpstreamTerminalError,
)
from imagequeue_common.images import ImageDecodeError, check_image
from imagequeue_common.prompts import build_prompt, seed_for
from imagequeue_common.queue.context import JobHandle
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings
from imagequeue_worker.looplag import LoopLag
from imagequeue_worker.upstream import ImageBackend, ImageRequest

log = logging.getLogger("imagequeue.worker")


class ImagePipeline:
    """Runs generate_image jobs with one store, one asset folder and one upstream."""

    def __init__(
        self,
        settings: Settings,
        store: CharacterStore,
        assets: AssetStore,
        backend: ImageBackend,
        ledger: JobLedger,
        *,
        lag: LoopLag | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.assets = assets
        self.backend = backend
        self.ledger = ledger
        self.lag = lag or LoopLag()
        """This process's loop delay, added to each permit's window (see :mod:`looplag`);
        it only counts once started (the worker does so at startup)."""

    async def run(self, payload: GenerateImagePayload, job: JobHandle) -> GenerateImageResult:
        """Generate, check, save and record one image; see the module docstring."""
        started = time.monotonic()
        retry = f" (retry {job.attempt - 1}/{job.max_attempts - 1})" if job.attempt > 1 else ""
        log.info("Processing image generation job %s for character: %s%s",
                 job.id, payload.character_name, retry, extra=_extra(job, payload))  # fmt: skip
        existing = await self.store.image_for_job(job.id)
        if existing is not None:
            log.info(
                "Job %s already saved its image: %s", job.id, existing, extra=_extra(job, payload)
            )
            await job.progress(100, "saved")
            return GenerateImageResult(payload.character_id, existing, 0.0, reused=True)
        await job.progress(10, "started")
        request = await self._request(payload, job)
        png = await self._generate(request, job)
        await job.progress(80, "image received")
        url = await self._save(payload, job, png)
        await job.progress(100, "saved")
        seconds = round(time.monotonic() - started, 2)
        log.info("✓ Job %s completed for character: %s\n   Image: %s, Time: %.2fs",
                 job.id, payload.character_id, url, seconds,
                 extra=_extra(job, payload))  # fmt: skip
        return GenerateImageResult(payload.character_id, url, seconds)

    async def _request(self, payload: GenerateImagePayload, job: JobHandle) -> ImageRequest:
        try:
            character = await self.store.get_character(payload.character_id)
            pose = await self.store.get_pose(payload.pose_id)
        except CharacterNotFoundError:
            # Deleted while queued: there is no one left to give the image to.
            raise JobCancelledError(job.id) from None
        except PoseNotFoundError as exc:
            raise TerminalJobError(str(exc)) from None
        settings = self.settings
        return ImageRequest(
            prompt=build_prompt(character, pose),
            negative_prompt=settings.ai_negative_prompt,
            width=settings.ai_image_width,
            height=settings.ai_image_height,
            seed=seed_for(job.id),
            quality=payload.quality,
            request_id=job.id,
        )

    async def _generate(self, request: ImageRequest, job: JobHandle) -> bytes:
        total = self.settings.ai_total_timeout_s
        backend = self.backend.name
        await self._permit(job)
        try:
            async with asyncio.timeout(total):
                raw = await self.backend.generate(request, job)
        except TimeoutError:
            await job.if_redis_answers(self.ledger.count_upstream("timeout"))
            raise UpstreamRetryableError(backend, f"no image within {total:g}s",
                                         kind="timeout") from None  # fmt: skip
        except (UpstreamRetryableError, UpstreamTerminalError, InvalidImageError) as exc:
            await job.if_redis_answers(self.ledger.count_upstream(_outcome(exc)))
            if isinstance(exc, UpstreamRetryableError) and exc.status == 429:
                await self._hold_queue(exc, job)
            raise
        try:
            checked = await asyncio.to_thread(check_image, raw)
        except ImageDecodeError as exc:
            await job.if_redis_answers(self.ledger.count_upstream("invalid_image"))
            raise InvalidImageError(backend, str(exc)) from None
        await job.if_redis_answers(self.ledger.count_upstream("ok"))
        return checked.png

    async def _permit(self, job: JobHandle) -> None:
        """Wait until the rate limit (and any 429 hold) lets this job's request go out."""
        while (wait_ms := await job.until_redis_answers(
            lambda: self.ledger.upstream_permit(job.id, job.token, self.lag.recent_max_ms)
        )) > 0:  # fmt: skip
            if await job.cancel_requested():
                raise JobCancelledError(job.id)
            await asyncio.sleep(wait_ms / 1000)

    async def _hold_queue(self, exc: UpstreamRetryableError, job: JobHandle) -> None:
        """A 429 is about the whole GPU side: every worker stops claiming, not just this one."""
        wait_s = exc.retry_after_s
        if wait_s is None:
            wait_s = self.settings.backoff_delay_ms / 1000
        await job.if_redis_answers(self.ledger.hold(math.ceil(wait_s * 1000)))
        log.warning("AI API answered 429: every worker holds claims for %.1fs", wait_s)

    async def _save(self, payload: GenerateImagePayload, job: JobHandle, png: bytes) -> str:
        saved: SavedImage = await asyncio.to_thread(
            self.assets.save_character_image,
            payload.character_id, payload.character_name, png, int(time.time()),
        )  # fmt: skip
        try:
            added = await self.store.append_image(payload.character_id, job.id, saved.url)
        except CharacterNotFoundError:
            self.assets.remove(saved.filename)
            raise JobCancelledError(job.id) from None
        except BaseException:
            self.assets.remove(saved.filename)  # no file without its record
            raise
        if added:
            log.info("✓ Image added to character: %s", payload.character_id,
                     extra=_extra(job, payload))  # fmt: skip
            return saved.url
        # Another run of this job recorded its image first: keep that one, drop ours.
        self.assets.remove(saved.filename)
        return await self.store.image_for_job(job.id) or saved.url


def _outcome(exc: Exception) -> str:
    """A metrics label for a failed AI request: its HTTP status, else what went wrong
    (from the error's fields, never its text)."""
    status = getattr(exc, "status", None)
    if status is not None:
        return str(status)
    if isinstance(exc, InvalidImageError):
        return "invalid_image"
    if isinstance(exc, UpstreamRetryableError):
        return exc.kind
    return "failed"


def _extra(job: JobHandle, payload: GenerateImagePayload) -> dict[str, object]:
    return {
        "job_id": job.id,
        "attempt": job.attempt,
        "character_id": payload.character_id,
        "pose_id": payload.pose_id,
    }
