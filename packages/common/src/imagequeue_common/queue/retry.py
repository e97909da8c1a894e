"""Retry policy: how a run's result becomes the job's next state.

Retryable failures go to ``delayed`` with exponential (or fixed) backoff; after the last
retry, and at once for terminal failures, the job is dead-lettered in ``failed``.
"""

from __future__ import annotations

import math
import re
import traceback

import msgspec

from imagequeue_common.errors import JobCancelledError, RetryableJobError, TerminalJobError
from imagequeue_common.queue.ledger import FinishKind
from imagequeue_common.settings import BackoffKind, Settings

_MAX_ERROR_CHARS = 4000
_MAX_TRACEBACK_CHARS = 4000
TRACEBACK_MARK = "\n--- traceback ---\n"
"""Separates a dead letter's one-line error from its traceback (``lua/_lib.lua`` knows it too)."""


class Outcome(msgspec.Struct, frozen=True):
    """The decided end of one run."""

    kind: FinishKind
    value: str = ""
    error: str = ""


class RetryPolicy(msgspec.Struct, frozen=True):
    """Backoff: ``delay = base * 2**(retry - 1)`` (exponential) or ``base`` (fixed)."""

    backoff: BackoffKind = "exponential"
    base_ms: int = 5000

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        """The policy the settings describe."""
        return cls(backoff=settings.backoff_type, base_ms=settings.backoff_delay_ms)

    def delay_ms(self, retry: int) -> int:
        """Delay before retry number ``retry`` (1 for the first retry)."""
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
        text = describe(error)
        if isinstance(error, TerminalJobError):
            return Outcome("failed", error=text + traceback_section(error))
        if attempts >= max_attempts:
            text += f" (gave up after {attempts} attempts)"
            return Outcome("failed", error=text + traceback_section(error))
        delay = self.delay_ms(attempts)
        if isinstance(error, RetryableJobError) and error.retry_after_s is not None:
            delay = max(delay, math.ceil(error.retry_after_s * 1000))
        return Outcome("retry", value=str(delay), error=text)


def describe(error: BaseException) -> str:
    """``Type: message`` and the innermost frame, capped, for the job's ``error`` field."""
    text = f"{type(error).__name__}: {error}"
    frames = traceback.extract_tb(error.__traceback__)
    if frames:
        last = frames[-1]
        text += f" (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno} in {last.name})"
    return text[:_MAX_ERROR_CHARS]


def traceback_section(error: BaseException) -> str:
    """The marker line and the last 4000 characters of ``error``'s formatted traceback
    (chained causes included), for a dead letter; '' when it was never raised."""
    if error.__traceback__ is None:
        return ""
    formatted = "".join(traceback.format_exception(error)).rstrip("\n")
    return TRACEBACK_MARK + formatted[-_MAX_TRACEBACK_CHARS:]


def short_error(error: str) -> str:
    """A stored error without its traceback section (what ``describe`` wrote)."""
    return error.split(TRACEBACK_MARK, 1)[0]


_LOCATION = re.compile(r" \(at [^()]+:\d+ in [^()]*\)(?=( \(gave up after \d+ attempts\))?$)")
"""The code location ``describe`` appends (`` (at http.py:89 in send)``), last but for the
note ``decide`` may add."""


def public_error(error: str) -> str:
    """A stored error as a user may see it: type, message and what became of the job
    (``(gave up after 4 attempts)``), without the traceback section or the code location."""
    return _LOCATION.sub("", short_error(error).rstrip("\n"), count=1)
