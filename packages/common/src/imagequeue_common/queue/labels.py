"""A job's taskiq labels (delay, user_id, ref, max_attempts), checked and converted."""

from __future__ import annotations

from typing import Any

from imagequeue_common.errors import InvalidJobError


def delay_ms(raw: object) -> int:
    """The ``delay`` label (seconds, may be fractional) in ms; 0 when absent."""
    if raw is None or raw == "":
        return 0
    try:
        seconds = float(str(raw))
    except ValueError:
        raise InvalidJobError(f"delay must be a number of seconds, got {raw!r}") from None
    if seconds < 0 or seconds != seconds:  # noqa: PLR0124  (NaN check)
        raise InvalidJobError(f"delay must not be negative, got {raw!r}")
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
