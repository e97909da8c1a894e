"""Domain objects → response structs: characters, jobs with their position and ETA."""

from __future__ import annotations

from imagequeue_api.eta import RatesCache, eta_seconds, waiting_eta_seconds
from imagequeue_api.schemas import CharacterOut, GenerationOut, ImageJob
from imagequeue_common.contracts import GenerateImageResult, JobState
from imagequeue_common.errors import JobNotFoundError
from imagequeue_common.queue.jobs import Job
from imagequeue_common.queue.ledger import Enqueued, JobLedger
from imagequeue_common.store import Character


async def generation_view(ledger: JobLedger, job: Job, rates_cache: RatesCache) -> GenerationOut:
    """A job as the API shows it, with its position and ETA while unfinished."""
    place = await ledger.place(job) if job.state == JobState.WAITING else None
    position = place.position if place else None
    finished = job.state.is_final
    distance = place.distance if place else 0
    eta = 0.0 if finished else eta_seconds(job, position, await rates_cache.get(),
                                           distance=distance)  # fmt: skip
    return GenerationOut(
        id=job.id,
        state=job.state.value,
        priority=job.priority.value,
        character_id=job.ref,  # the character the job is for (its ``ref`` label)
        progress=job.progress,
        progress_message=job.progress_msg,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        stalls=job.stalls,
        last_error=_public_error(job.error),
        result_url=result_url(job),
        position=position,
        eta_seconds=eta,
        created_at=job.created_at / 1000,
        started_at=job.started_at / 1000 if job.started_at else None,
        finished_at=job.finished_at / 1000 if job.finished_at else None,
        start_by=job.start_by / 1000 if job.start_by else None,
    )


async def character_view(
    ledger: JobLedger, character: Character, rates_cache: RatesCache
) -> CharacterOut:
    """A character in the seed's shape, with its latest image job."""
    image_job = None
    if character.image_job_id:
        try:
            stored = await ledger.get_job(character.image_job_id)
            job = await generation_view(ledger, stored, rates_cache)
            image_job = ImageJob(job.id, job.state, job.position, job.eta_seconds)
        except JobNotFoundError:  # cleaned after retention: its outcome is on the character
            done = bool(character.display_image_urls)
            image_job = ImageJob(character.image_job_id, "completed" if done else "gone")
    return _character_out(character, image_job)


async def queued_character_view(
    character: Character, queued: Enqueued, rates_cache: RatesCache
) -> CharacterOut:
    """A character whose image job was just queued: the job's state and place come from
    the enqueue itself, so the answer costs no further read of the job."""
    rates = await rates_cache.get()
    eta = waiting_eta_seconds(queued.position, rates, queued.active, queued.priority,
                              queued.distance)  # fmt: skip
    image_job = ImageJob(queued.job_id, queued.state.value, queued.position, eta)
    return _character_out(character, image_job)


def _character_out(character: Character, image_job: ImageJob | None) -> CharacterOut:
    return CharacterOut(
        id=character.id,
        name=character.name,
        description=character.description,
        personality=character.personality,
        display_image_urls=character.display_image_urls,
        image_job=image_job,
        created_at=character.created_at,
        updated_at=character.updated_at,
    )


def _public_error(error: str | None) -> str | None:
    """The error for users (the job's ``error``: never its detail), at most 500 characters."""
    return error[:500] if error else None


def result_url(job: Job) -> str | None:
    """The image URL a completed generate_image job recorded."""
    result = GenerateImageResult.from_stored(job.result)
    return None if result is None else result.url
