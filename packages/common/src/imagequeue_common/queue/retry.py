"""Retry policy: how a run's result becomes the job's next state.

Retryable failures go to ``delayed`` with exponential (or fixed) backoff; after the last
retry, and at once for terminal failures, the job is dead-lettered in ``failed``.
"""

from __future__ import annotations

import math
import traceback

import msgspec

from imagequeue_common.errors import JobCancelledError, RetryableJobError, TerminalJobError
from imagequeue_common.queue.ledger import FinishKind
from imagequeue_common.settings import BackoffKind, Settings

_MAX_ERROR_CHARS = 4000
_MAX_TRACEBACK_CHARS = 4000
TRACEBACK_MARK = "\n--- traceback ---\n"
"""Starts the traceback in a dead letter's ``detail``, after the line that says where."""


class Outcome(msgspec.Struct, frozen=True):
    """The decided end of one run. ``error`` is what a user may see (``Type: message``,
    and ``(gave up after N attempts)`` on the last one); ``detail`` is for operators only:
    where it was raised and, for a dead letter, the traceback."""

    kind: FinishKind
    value: str = ""
    error: str = ""
    detail: str = ""


class RetryPolicy(msgspec.Struct, frozen=True):
    """Backoff: ``delay = base * 2**(retry - 1)`` (exponential) or ``base`` (fixed), unless
    a ``schedule`` gives each retry's delay (the webhook deliveries': Svix's)."""

    backoff: BackoffKind = "exponential"
    base_ms: int = 5000
    schedule_ms: tuple[int, ...] = ()
    """The delay before each retry (the last one repeats); empty: the backoff."""

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy the settings describe."""
        return cls(backoff=settings.backoff_type, base_ms=settings.backoff_delay_ms)

    def delay_ms(self, retry: int) -> int:
        """Delay before retry number ``retry`` (1 for the first retry)."""
        if self.schedule_ms:
            return self.schedule_ms[min(max(retry, 1), len(self.schedule_ms)) - 1]
        if self.backoff == "fixed":
            return self.base_ms
        return self.base_ms << max(retry - 1, 0)

    def decide(
        self, *, attempts: int, max_attempts: int, error: BaseException | None, value: str = ""
    ) -> Outcome:
        """The outcome of run number ``attempts`` that ended with ``error`` (or none)."""
        if error is None:
            return Outcome("completed", value=value)
        if isinstance(error, JobCancelledError):
            return Outcome("cancelled")
        text, detail = describe(error), raised_at(error)
        if isinstance(error, TerminalJobError):
            return Outcome("failed", error=text, detail=detail + traceback_section(error))
        if attempts >= max_attempts:
            text += f" (gave up after {attempts} attempts)"
            return Outcome("failed", error=text, detail=detail + traceback_section(error))
        delay = self.delay_ms(attempts)
        if isinstance(error, RetryableJobError) and error.retry_after_s is not None:
            delay = max(delay, math.ceil(error.retry_after_s * 1000))
        return Outcome("retry", value=str(delay), error=text, detail=detail)


def describe(error: BaseException) -> str:
    """``Type: message``, capped: the job's ``error`` field, which users see."""
    return f"{type(error).__name__}: {error}"[:_MAX_ERROR_CHARS]


def raised_at(error: BaseException) -> str:
    """Where ``error`` was raised (``at http.py:89 in send``), '' when it never was."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f"at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name}"


def traceback_section(error: BaseException) -> str:
    """The marker line and the last 4000 characters of ``error``'s formatted traceback
    (chained causes included), for a dead letter's detail; '' when it was never raised."""
    if error.__traceback__ is None:
        return ""
    formatted = "".join(traceback.format_exception(error)).rstrip("\n")
    return TRACEBACK_MARK + formatted[-_MAX_TRACEBACK_CHARS:]
