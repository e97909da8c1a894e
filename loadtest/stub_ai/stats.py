"""What the stub saw: submissions per protocol and status, peaks, and the recent ones."""

from __future__ import annotations

import time
from collections import Counter, deque

import msgspec

PROTOCOLS = ("generic", "automatic1111", "openai", "comfyui", "runpod")
KEEP_RECENT = 2000


class Submission(msgspec.Struct, frozen=True):
    """One submission as recorded; never the prompt text."""

    t: float
    """Arrival, unix seconds."""
    protocol: str
    status: int | None
    """The status code answered at submission; None for a synchronous hang (never answered)."""
    outcome: str
    request_id: str | None
    seed: int | None


class StatsSnapshot(msgspec.Struct, frozen=True):
    """The body of ``GET /stub/stats``."""

    requests: dict[str, int]
    polls: dict[str, int]
    submissions: int
    statuses: dict[str, int]
    peak_per_second: int
    peak_concurrency: int
    in_flight: int
    cancels: int
    recent: list[Submission]


class Stats:
    """Counters of one stub process; ``reset`` clears all but the live ``in_flight`` gauge."""

    def __init__(self) -> None:
        self.in_flight = 0
        self._clear()

    def _clear(self) -> None:
        self._requests: Counter[str] = Counter()
        self._polls: Counter[str] = Counter()
        self._statuses: Counter[str] = Counter()
        self._last_second: deque[float] = deque()
        self._recent: deque[Submission] = deque(maxlen=KEEP_RECENT)
        self._peak_per_second = 0
        # Work that started before a reset is still running: the new peak starts from it.
        self._peak_concurrency = self.in_flight
        self._cancels = 0

    def reset(self) -> None:
        """Forget everything counted so far."""
        self._clear()

    def submission(self, entry: Submission) -> None:
        """Count an arriving submission and update the sliding one-second peak."""
        now = time.monotonic()
        window = self._last_second
        window.append(now)
        while window[0] <= now - 1.0:
            window.popleft()
        self._peak_per_second = max(self._peak_per_second, len(window))
        self._requests[entry.protocol] += 1
        if entry.status is not None:
            self._statuses[str(entry.status)] += 1
        self._recent.append(entry)

    def poll(self, protocol: str) -> None:
        """Count a status poll, history read or image download."""
        self._polls[protocol] += 1

    def cancel(self) -> None:
        """Count a job cancelled while it was still running."""
        self._cancels += 1

    def work_started(self) -> None:
        """A submission is being worked: a sync request until answered, a job until done."""
        self.in_flight += 1
        self._peak_concurrency = max(self._peak_concurrency, self.in_flight)

    def work_ended(self) -> None:
        """The counterpart of :meth:`work_started`, called exactly once per started work."""
        self.in_flight -= 1

    def snapshot(self) -> StatsSnapshot:
        """The current counters as the JSON-ready stats body."""
        return StatsSnapshot(
            requests={p: self._requests[p] for p in PROTOCOLS},
            polls={p: self._polls[p] for p in PROTOCOLS},
            submissions=sum(self._requests.values()),
            statuses=dict(self._statuses),
            peak_per_second=self._peak_per_second,
            peak_concurrency=self._peak_concurrency,
            in_flight=self.in_flight,
            cancels=self._cancels,
            recent=list(self._recent),
        )
