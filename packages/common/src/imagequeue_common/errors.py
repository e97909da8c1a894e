"""The one error tree of imagequeue.

Each error carries its facts as attributes so that callers (the HTTP layer, the retry
policy, the dashboard) decide from data, never from message text. Retryable and terminal
job failures are different types: the retry policy looks only at the type.
"""

from __future__ import annotations

from typing import Literal


class ImageQueueError(Exception):
    """Base of every error imagequeue raises on purpose."""


class SettingsError(ImageQueueError):
    """A setting is missing or malformed; the message names the variable."""


class InvalidJobError(ImageQueueError, ValueError):
    """A job was rejected before anything was written (bad priority, delay, payload)."""


class JobNotFoundError(ImageQueueError, LookupError):
    """No job with this id exists in the queue (never did, or was cleaned)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id


class JobStateError(ImageQueueError):
    """The job exists but is in a state where the operation does not apply."""

    def __init__(self, job_id: str, state: str, operation: str) -> None:
        super().__init__(f"cannot {operation} job {job_id!r}: it is {state}")
        self.job_id = job_id
        self.state = state
        self.operation = operation


class DuplicateJobError(ImageQueueError):
    """A job with this id already exists; nothing was changed."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} already exists")
        self.job_id = job_id


class GenerationDisabledError(ImageQueueError):
    """``AI_GENERATION_ENABLED`` is false: no image job was queued."""

    def __init__(self) -> None:
        super().__init__("AI image generation is disabled (AI_GENERATION_ENABLED=false)")


class UserQuotaError(ImageQueueError):
    """The user already has as many unfinished jobs as allowed; nothing was queued."""

    def __init__(self, user_id: str, limit: int) -> None:
        super().__init__(f"user {user_id!r} already has {limit} unfinished jobs")
        self.user_id = user_id
        self.limit = limit


class QueueFullError(ImageQueueError):
    """``MAX_QUEUE_LENGTH`` jobs wait already; nothing was queued."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the queue is full: {limit} jobs are waiting")
        self.limit = limit


class QueueUnavailableError(ImageQueueError):
    """Redis did not answer; the operation may be tried again later."""


# Failures raised inside a running job. The retry policy maps them to outcomes.


class JobFailureError(ImageQueueError):
    """Base of failures a task raises on purpose."""


class RetryableJobError(JobFailureError):
    """The job may succeed if run again (timeouts, 5xx, 429, a truncated image).

    ``retry_after_s`` (from an upstream ``Retry-After``) is a floor for the backoff delay.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class TerminalJobError(JobFailureError):
    """Running the job again cannot help (a 4xx other than 408/429): dead-letter it now."""


class DeliveryFailedError(RetryableJobError):
    """A webhook receiver did not take a delivery (its status and the start of its answer,
    or the error); it is tried again on the schedule."""


class DeliveryStoppedError(TerminalJobError):
    """A webhook delivery that is not to be tried again (410 Gone, a refused address, a
    disabled endpoint, a revoked key)."""


class JobCancelledError(JobFailureError):
    """The job was cancelled while it ran; raised at the next progress point."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} was cancelled")
        self.job_id = job_id


class LeaseLostError(JobFailureError):
    """This worker no longer holds the job (it was recovered elsewhere): stop working on it."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"lease on job {job_id!r} was lost")
        self.job_id = job_id


# The character store.


class StoreError(ImageQueueError):
    """Base of the character store's errors."""


class StoreUnavailableError(StoreError):
    """The database did not answer; the operation may be tried again later."""


class CharacterNotFoundError(StoreError, LookupError):
    """No character with this id (never created, or deleted)."""

    def __init__(self, character_id: str) -> None:
        super().__init__(f"character {character_id!r} not found")
        self.character_id = character_id


class PoseNotFoundError(StoreError, LookupError):
    """No pose with this id."""

    def __init__(self, pose_id: str) -> None:
        super().__init__(f"pose {pose_id!r} not found")
        self.pose_id = pose_id


# The upstream AI API, as seen from a running job.


UpstreamFailure = Literal["status", "timeout", "connection", "failed"]
"""What went wrong with an AI request: an HTTP status (``status`` says which), no answer
in time, no connection, or a run the backend reports as failed."""


class UpstreamRetryableError(RetryableJobError):
    """The AI API failed in a way that may pass: timeout, connection, 5xx, 408, 429."""

    def __init__(
        self,
        backend: str,
        message: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        kind: UpstreamFailure | None = None,
    ) -> None:
        super().__init__(f"{backend}: {message}", retry_after_s=retry_after_s)
        self.backend = backend
        self.status = status
        self.kind: UpstreamFailure = kind or ("status" if status is not None else "failed")


class InvalidImageError(RetryableJobError):
    """The AI API answered with something that is not a decodable PNG, JPEG or WebP image."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend}: invalid image: {reason}")
        self.backend = backend
        self.reason = reason


class AddressRefusedError(ImageQueueError):
    """A connection the SSRF guard refused: ``host`` resolves to ``address``, which is not a
    global address and is not allowed by ``AI_RESULT_URL_PRIVATE_HOSTS``."""

    def __init__(self, host: str, address: str) -> None:
        super().__init__(
            f"{host} resolves to {address}, not a public address "
            "(allow it with AI_RESULT_URL_PRIVATE_HOSTS)"
        )
        self.host = host
        self.address = address


class UpstreamTerminalError(TerminalJobError):
    """The AI API refused the request (a 4xx other than 408/429): asking again cannot help."""

    def __init__(self, backend: str, message: str, *, status: int | None = None) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.status = status
