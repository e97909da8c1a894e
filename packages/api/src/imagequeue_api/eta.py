"""A job's place in the queue and when it should be done.

Position is exact (the job's rank in the waiting set, which is claim order). The ETA is an
estimate from the jobs ahead, the start rate the queue can sustain — the global rate limit
or the live workers' slots over the mean job time, whichever is lower, and the live
throughput when that is lower still while every slot is busy (a slow or throttling GPU
side) — and the recent mean job time (last minute, else lifetime, else the seed's 45 s).
"""

from __future__ import annotations

import asyncio
import math
import time

import msgspec

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.jobs import Job
from imagequeue_common.queue.ledger import JobLedger

DEFAULT_JOB_S = 45.0
"""The seed's typical image time (30-60 s), used until the queue has measured its own."""


class QueueRates(msgspec.Struct, frozen=True):
    """What the ETA needs to know about the queue right now."""

    mean_job_s: float
    slots: int
    rate_per_s: float
    """Starts per second the rate limit allows (``inf`` without a limit)."""
    observed_per_s: float = 0.0
    """Completions per second over the last minute."""
    saturated: bool = False
    """Every live slot is busy: the observed rate is the queue's real capacity."""

    @property
    def start_rate(self) -> float:
        """Job starts per second the queue can sustain now (0 with no live worker)."""
        if self.slots == 0:
            return 0.0
        rate = min(self.rate_per_s, self.slots / self.mean_job_s)
        if self.saturated and 0 < self.observed_per_s < rate:
            return self.observed_per_s
        return rate


async def queue_rates(ledger: JobLedger) -> QueueRates:
    """Measure the queue's current rates (three Redis reads)."""
    settings = ledger.settings
    recent = await ledger.throughput()
    mean = recent.mean_run_s
    if mean is None:
        lifetime = await ledger.metrics()
        mean = lifetime.run_ms_completed / lifetime.completed / 1000 if lifetime.completed else None
    workers = await ledger.live_workers()
    slots = sum(w.concurrency for w in workers)
    limit = settings.rate_limit_max
    rate = limit * 1000 / settings.rate_limit_duration_ms if limit else math.inf
    active = (await ledger.stats()).active
    return QueueRates(
        mean_job_s=max(mean or DEFAULT_JOB_S, 0.001),
        slots=slots,
        rate_per_s=rate,
        observed_per_s=recent.completed / recent.window_s,
        saturated=slots > 0 and active >= slots,
    )


def eta_seconds(
    job: Job, position: int | None, rates: QueueRates, now_ms: float | None = None
) -> float | None:
    """Seconds until ``job`` is expected to finish; None when unknowable (no workers)."""
    now = time.time() * 1000 if now_ms is None else now_ms
    if job.state in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED):
        return 0.0
    if job.state == JobState.ACTIVE:
        ran_s = (now - (job.started_at or now)) / 1000
        return round(max(rates.mean_job_s - ran_s, 0.0), 1)
    if job.state != JobState.DELAYED:
        return waiting_eta_seconds(position, rates)
    if rates.start_rate <= 0:
        return None
    wait_s = max((job.due_at or now) - now, 0) / 1000 + 1 / rates.start_rate
    return round(wait_s + rates.mean_job_s, 1)


def drain_eta_seconds(backlog: int, rates: QueueRates) -> float | None:
    """Seconds until ``backlog`` jobs (waiting and delayed) are all done at the rate the
    queue sustains now; None with no live worker."""
    if backlog == 0:
        return 0.0
    if rates.start_rate <= 0:
        return None
    return round(backlog / rates.start_rate + rates.mean_job_s, 1)


def waiting_eta_seconds(position: int | None, rates: QueueRates) -> float | None:
    """Seconds until a waiting job with ``position`` jobs ahead should be done."""
    if rates.start_rate <= 0:
        return None
    return round(((position or 0) + 1) / rates.start_rate + rates.mean_job_s, 1)


class RatesCache:
    """The queue's rates, measured at most once per ``max_age_s`` by this process.

    Every job view needs them (four Redis reads); an ETA a second old is as good, and a
    thousand clients polling their jobs then cost one measurement a second, not thousands.
    Requests arriving while a measurement runs wait for that one instead of starting more.
    """

    def __init__(self, ledger: JobLedger, max_age_s: float = 1.0) -> None:
        self.ledger = ledger
        self.max_age_s = max_age_s
        self._rates: QueueRates | None = None
        self._at = 0.0
        self._measuring: asyncio.Future[QueueRates] | None = None

    async def get(self) -> QueueRates:
        """Fresh enough rates (measured again when older than ``max_age_s``)."""
        if self._rates is not None and time.monotonic() - self._at <= self.max_age_s:
            return self._rates
        if self._measuring is None:
            self._measuring = asyncio.ensure_future(self._measure())
            # Retrieved even when every waiter was cancelled, so a failure is not reported
            # as "never retrieved"; the next call measures again.
            self._measuring.add_done_callback(lambda f: f.cancelled() or f.exception())
        # Shielded: one caller going away must not cancel the others' measurement.
        return await asyncio.shield(self._measuring)

    async def _measure(self) -> QueueRates:
        try:
            self._rates = await queue_rates(self.ledger)
            self._at = time.monotonic()
            return self._rates
        finally:
            self._measuring = None
