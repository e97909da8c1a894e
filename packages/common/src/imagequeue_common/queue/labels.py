"""A job's taskiq labels (delay, start_deadline, dedup_key, user_id, ref, retries,
max_attempts, rate_limited, webhook and webhook_events), checked and converted."""

from __future__ import annotations

from typing import Any

import msgspec

from imagequeue_common.contracts import Priority
from imagequeue_common.errors import InvalidJobError
from imagequeue_common.webhooks import FINAL_EVENTS, event_letters

MAX_SECONDS = 10**9
"""The longest delay or deadline a label may give (about 31 years)."""


def delay_ms(raw: object, name: str = "delay") -> int:
    """The ``delay`` label (seconds, may be fractional; or another label of seconds, such as
    ``start_deadline``) in ms; 0 when absent."""
    if raw is None or raw == "":
        return 0
    try:
        seconds = float(str(raw))
    except ValueError:
        raise InvalidJobError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 <= seconds <= MAX_SECONDS:  # NaN fails both comparisons
        raise InvalidJobError(f"{name} must be 0 to {MAX_SECONDS} seconds, got {raw!r}")
    return round(seconds * 1000)


def label_str(labels: dict[str, Any], name: str) -> str:
    """A string label of at most 64 characters ('' when absent)."""
    value = str(labels.get(name, ""))
    if len(value) > 64:
        raise InvalidJobError(f"label {name} must be at most 64 characters")
    return value


def label_int(labels: dict[str, Any], name: str) -> int | None:
    """A whole-number label, or None when absent."""
    raw = labels.get(name)
    if raw is None:
        return None
    try:
        return int(str(raw))
    except ValueError:
        raise InvalidJobError(f"label {name} must be a whole number, got {raw!r}") from None


def label_bool(labels: dict[str, Any], name: str) -> bool:
    """A yes/no label (``True``/``False``, ``true``/``false``, ``1``/``0``); False when absent."""
    raw = labels.get(name)
    if raw is None or raw == "":
        return False
    value = str(raw).strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise InvalidJobError(f"label {name} must be true or false, got {raw!r}")


RATE_LIMITED = "rate_limited"
"""The label that puts a task's starts under ``RATE_LIMIT_MAX`` (``generate_image`` has it;
a plain taskiq task starts whenever a slot is free)."""

ENGINE_RETRIES = "engine"
"""The ``retries`` label's value for the engine's own retry policy: ``JOB_RETRIES`` retries
with its backoff (what ``generate_image`` has)."""

ENGINE_LABELS: dict[str, str] = {"retries": ENGINE_RETRIES, RATE_LIMITED: "true"}
"""What a task of the engine's own kind declares (``generate_image``): the engine's retries
and backoff, starts under the rate limit."""


def max_attempts(labels: dict[str, Any], job_retries: int) -> int:
    """How many runs a job may have, from its labels: ``max_attempts``, else ``retries``
    (a number, or ``engine`` for ``job_retries``) plus the first run, else one run — a
    plain taskiq task is not retried unless it asks."""
    explicit = label_int(labels, "max_attempts")
    if explicit is not None:
        return explicit
    retries = labels.get("retries")
    if retries is None or retries == "":
        return 1
    if str(retries) == ENGINE_RETRIES:
        return job_retries + 1
    count = label_int(labels, "retries")
    if count is None or count < 0:
        raise InvalidJobError(f"label retries must be a whole number or 'engine', got {retries!r}")
    return count + 1


class JobOptions(msgspec.Struct, frozen=True):
    """How a message's labels say its job is to be queued."""

    priority: Priority
    user_id: str
    delay_ms: int
    max_attempts: int
    ref: str
    rate_limited: bool
    start_deadline_ms: int = 0
    """Not started within this many ms, the job expires (0: no deadline)."""
    dedup_key: str = ""
    """While a job of this key is unfinished, another is not queued (it is answered)."""
    hook_events: str = ""
    """The letters of the events its ``webhook`` is to hear (``webhooks.EVENTS``); ''."""


def job_options(labels: dict[str, Any], job_retries: int) -> JobOptions:
    """The queueing options of a message's ``labels`` (:class:`InvalidJobError` when one is
    malformed: nothing is queued then)."""
    try:
        priority = Priority.parse(labels.get("priority", Priority.NORMAL))
    except ValueError as exc:
        raise InvalidJobError(str(exc)) from None
    return JobOptions(
        priority=priority,
        user_id=label_str(labels, "user_id"),
        delay_ms=delay_ms(labels.get("delay")),
        max_attempts=max_attempts(labels, job_retries),
        ref=label_str(labels, "ref"),
        rate_limited=label_bool(labels, RATE_LIMITED),
        start_deadline_ms=delay_ms(labels.get("start_deadline"), "start_deadline"),
        dedup_key=label_str(labels, "dedup_key"),
        hook_events=hook_events(labels),
    )


def hook_events(labels: dict[str, Any]) -> str:
    """The letters of the ``webhook_events`` label (default: the final events), or '' when
    the job has no ``webhook``."""
    if not labels.get("webhook"):
        return ""
    raw = labels.get("webhook_events")
    names = FINAL_EVENTS if raw is None or raw == "" else str(raw).split(",")
    try:
        return event_letters(name.strip() for name in names)
    except ValueError as exc:
        raise InvalidJobError(str(exc)) from None
