"""An upstream's own words about a failure, as much of them as a job's error may keep.

A job's error is shown by the API (``lastError``) and written to the worker's log line, and
prompts never appear in logs. Upstream handlers like to echo their input ("bad input:
<prompt>"), so before a reason is kept every stretch of it copied from the prompt is cut
out; then it is put on one line and capped.
"""

from __future__ import annotations

from collections.abc import Iterable

MAX_REASON_CHARS = 300
ECHO_CHARS = 24
"""A run of this many characters (or a whole shorter prompt of at least ``MIN_SECRET``)
taken from a prompt counts as an echo of it."""
MIN_SECRET = 8
CUT = "<prompt>"


def keepable(text: str, secrets: Iterable[str], limit: int = MAX_REASON_CHARS) -> str:
    """``text`` without echoes of ``secrets``, whitespace collapsed, at most ``limit`` chars."""
    line = " ".join(without_echoes(text, secrets).split())
    return line if len(line) <= limit else f"{line[: limit - 1]}…"


def without_echoes(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every stretch copied from one of ``secrets`` replaced by ``<prompt>``."""
    covered = [False] * len(text)
    for secret in secrets:
        if len(secret) < MIN_SECRET:
            continue
        width = min(ECHO_CHARS, len(secret))
        pieces = {secret[i : i + width] for i in range(len(secret) - width + 1)}
        for start in range(len(text) - width + 1):
            if text[start : start + width] in pieces:
                covered[start : start + width] = [True] * width
    out: list[str] = []
    for index, char in enumerate(text):
        if not covered[index]:
            out.append(char)
        elif index == 0 or not covered[index - 1]:
            out.append(CUT)
    return "".join(out)
