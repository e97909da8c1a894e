"""Readable numbers for the dashboard: relative times, durations, sizes (Jinja filters)."""

from __future__ import annotations

import time

_UNITS = ((86_400_000, "d"), (3_600_000, "h"), (60_000, "min"), (1000, "s"))


def duration(ms: float | None) -> str:
    """``1234`` → ``1.2 s``; ``95_000`` → ``1 min 35 s``."""
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    parts: list[str] = []
    rest = int(ms)
    for size, unit in _UNITS:
        if rest >= size and len(parts) < 2:
            parts.append(f"{rest // size} {unit}")
            rest %= size
    return " ".join(parts)


def ago(ms: float | None, now_ms: float | None = None) -> str:
    """A past (or future) moment in ms as ``3 min ago`` / ``in 5 s``."""
    if not ms:
        return "—"
    now = time.time() * 1000 if now_ms is None else now_ms
    delta = now - ms
    if abs(delta) < 1000:
        return "just now"
    return f"{duration(delta)} ago" if delta > 0 else f"in {duration(-delta)}"


def size(n: float | None) -> str:
    """Bytes as ``12.3 MB``."""
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


FILTERS = {"duration": duration, "ago": ago, "size": size}
