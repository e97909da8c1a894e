"""A job's place in the queue and when it should be done.

Position is exact (the job's rank in the waiting set, which is claim order). The ETA is a
small model of the queue, measured at most once a second per API process:

- **job time** — the expected time of one job: ``EXPECTED_JOB_S`` (the operator's figure
  for their GPU) until the queue has measured its own, then blended into the measured mean
  (last minute, else lifetime) with the setting weighing as much as one round of jobs on
  every slot, so the first few completions — the shortest ones of a burst — cannot swing it;
- **start rate** — the rate limit or the live slots over the job time, whichever is lower,
  and the observed completion rate when that is lower still while every slot is busy; the
  observed rate only counts once the queue has been busy over its whole window (a rate over
  a span not observed is no rate);
- **when the slots free up** — each running job is expected to end one job time after it
  started, an idle slot is free now, and every job after fills the slot that frees first:
  the ``n``-th start is the ``n mod slots``-th soonest free slot plus ``n div slots`` rounds.
  A burst on fresh slots thus waits a whole job time for its first start, a queue in steady
  state less; this is what ``(position + 1) / rate`` misses by up to one job time;
- **cut-ins from above** — a waiting job's position counts the higher-priority jobs already
  waiting, not those that will arrive before it starts. Each higher priority still flowing
  (see ``Flow.live``: a burst that stopped is over) is forecast to go on at the rate seen
  over the last minute for as long again as it has been seen: the median guess for a flow
  of unknown length, and for a burst still arriving it is "as many again as so far", since
  rate times horizon is the count. A wave still to come cannot be foreseen; ``bench-eta``
  shows what that costs the lower tiers.
- **cut-ins beside** (fair share, ``queue.fairness``) — a job deep in its own user's flow
  (its tag ``distance`` ahead of the virtual time) is passed by later arrivals that join
  the turn being served (a user with nothing waiting: their tag is the virtual time). They
  cut in until the virtual time reaches the job's tag: for all its wait but its own turn,
  taken as the share ``distance / (distance + inc)`` of the wait (``inc``: the job's own
  increment, one turn of its flow). Such arrivals of its own priority (strict policy) or
  of every priority (weighted, where the flows above are no longer all ahead) are
  forecast as the flows above are. A user's first job is in the turn being served
  (distance 0): nothing cuts in.
"""

from __future__ import annotations

import asyncio
import math
import time

import msgspec

from imagequeue_common.contracts import JobState, Priority
from imagequeue_common.queue.fairness import increments
from imagequeue_common.queue.jobs import Job
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.queue.occupancy import Flow, arrivals, running
from imagequeue_common.queue.reads import LedgerMetrics, Throughput


class QueueRates(msgspec.Struct, frozen=True):
    """What the ETA needs to know about the queue right now."""

    mean_job_s: float
    slots: int
    rate_per_s: float
    """Starts per second the rate limit allows (``inf`` without a limit)."""
    observed_per_s: float = 0.0
    """Completions per second over a fully observed recent window (0 when not observed)."""
    saturated: bool = False
    """Every live slot is busy: the observed rate is the queue's real capacity."""
    running_s: tuple[float, ...] = ()
    """How long each running job had been running when this was measured."""
    measured_at: float = 0.0
    """``time.monotonic()`` of the measurement (running times age from it)."""
    cut_ins: dict[Priority, tuple[tuple[float, float], ...]] = msgspec.field(default_factory=dict)
    """Per priority: ``(arrivals per second, for how many seconds more)`` of each priority
    above it that is still flowing."""
    turns: dict[Priority, tuple[float, float]] = msgspec.field(default_factory=dict)
    """Per priority still flowing: ``(arrivals per second, for how many seconds more)`` of
    the jobs that take the next turn (fair share's newcomers)."""
    increments: dict[Priority, int] = msgspec.field(default_factory=dict)
    """Each priority's tag increment per job (1 each under the strict policy)."""
    strict: bool = True
    """``PRIORITY_POLICY=strict``: every higher priority starts first."""

    @property
    def start_rate(self) -> float:
        """Job starts per second the queue can sustain now (0 with no live worker)."""
        if self.slots == 0:
            return 0.0
        rate = min(self.rate_per_s, self.slots / self.mean_job_s)
        if self.saturated and 0 < self.observed_per_s < rate:
            return self.observed_per_s
        return rate

    def slot_free_in_s(self, active: int | None = None, now: float | None = None) -> list[float]:
        """Seconds until each slot is free, soonest first (one entry per slot).

        ``active``: the running jobs counted just now (the enqueue reads it atomically);
        jobs started since the measurement are taken as just started, jobs gone as ended.
        """
        age = (time.monotonic() if now is None else now) - self.measured_at
        left = sorted(max(self.mean_job_s - ran - age, 0.0) for ran in self.running_s)
        count = len(left) if active is None else min(active, self.slots)
        if count < len(left):
            left = left[len(left) - count :]  # the soonest ones have ended
        left += [self.mean_job_s] * (count - len(left))
        return sorted([0.0] * (self.slots - len(left)) + left[: self.slots])

    def start_in_s(
        self, ahead: int, active: int | None = None, priority: Priority = Priority.HIGH,
        distance: int = 0,
    ) -> float | None:  # fmt: skip
        """Seconds until a waiting job with ``ahead`` jobs before it starts, its tag
        ``distance`` ahead of the virtual time (0: ignore the cut-ins beside it)."""
        if self.start_rate <= 0:
            return None
        free = self.slot_free_in_s(active)
        rounds, slot = divmod(ahead, self.slots)
        by_slots = free[slot] + rounds * self.slots / self.start_rate
        # The rate limit spaces starts out even while slots are free.
        alone = max(by_slots, ahead / self.rate_per_s)
        return with_cut_ins(alone, self._cut_in_flows(priority, distance))

    def _cut_in_flows(self, priority: Priority, distance: int) -> list[tuple[float, float]]:
        """``(share of the starts, horizon)`` of each flow that will start before the job."""
        flows = []
        if self.strict:
            flows = [(rate / self.start_rate, h) for rate, h in self.cut_ins.get(priority, ())]
        if distance <= 0:
            return flows
        # Ahead for the share ``part`` of the wait: min(T * part, h) = part * min(T, h / part).
        part = distance / (distance + self.increments.get(priority, 1))
        for other, (rate, horizon) in self.turns.items():
            if not self.strict or other == priority:
                flows.append((rate * part / self.start_rate, horizon / part))
        return flows


def with_cut_ins(alone: float, flows: list[tuple[float, float]]) -> float:
    """The wait ``T`` of a job that would start after ``alone`` seconds while flows above
    it take ``share`` of the starts each for ``horizon`` seconds more:
    ``T = alone + sum(share * min(T, horizon))``, the least solution. The right side is
    piecewise linear in ``T`` with a break at each horizon; past the last one it is flat,
    so a solution always exists, also when the flows above take every start."""
    flows = sorted(flows, key=lambda f: f[1])
    start, fixed = 0.0, alone  # fixed: alone plus the cut-ins of the flows already over
    for i, (_, horizon) in enumerate(flows):
        slope = sum(share for share, _ in flows[i:])
        if slope < 1 and start <= fixed / (1 - slope) <= horizon:
            return fixed / (1 - slope)
        fixed += flows[i][0] * horizon
        start = horizon
    return fixed


async def queue_rates(ledger: JobLedger) -> QueueRates:
    """Measure the queue's current rates (a few Redis reads)."""
    settings = ledger.settings
    recent = await ledger.throughput()
    lifetime = await ledger.metrics()
    workers = await ledger.live_workers()
    slots = sum(w.concurrency for w in workers)
    jobs = await running(ledger)
    measured = time.monotonic()
    flows = await arrivals(ledger)
    turns = await arrivals(ledger, ledger.keys.turns)
    mean = blended_job_s(settings.expected_job_s, slots, recent, lifetime)
    limit = settings.rate_limit_max
    rate = limit * 1000 / settings.rate_limit_duration_ms if limit else math.inf
    full = recent.observed_s >= recent.window_s
    return QueueRates(
        mean_job_s=mean,
        slots=slots,
        rate_per_s=rate,
        observed_per_s=recent.completed / recent.window_s if full else 0.0,
        saturated=slots > 0 and len(jobs) >= slots,
        running_s=tuple(ran for _, ran in jobs),
        measured_at=measured,
        cut_ins=cut_ins(flows),
        turns={p: forecast(f) for p, f in turns.items() if f.live},
        increments={Priority(p): i for p, i in increments(
            settings.priority_policy, settings.priority_weights).items()},
        strict=settings.priority_policy == "strict",
    )  # fmt: skip


def forecast(flow: Flow) -> tuple[float, float]:
    """A live flow's ``(rate, horizon)``: its rate over the span seen, for as long again."""
    span = max(flow.span_s, 0.1)
    return flow.count / span, span


def cut_ins(flows: dict[Priority, Flow]) -> dict[Priority, tuple[tuple[float, float], ...]]:
    """Per priority, ``(rate, horizon)`` of each higher priority still flowing: its rate
    over the span seen, forecast for as long again."""
    out: dict[Priority, tuple[tuple[float, float], ...]] = {}
    above: list[tuple[float, float]] = []
    for priority in Priority:  # highest first
        out[priority] = tuple(above)
        flow = flows.get(priority)
        if flow is not None and flow.live:
            above.append(forecast(flow))
    return out


def blended_job_s(
    expected_s: float, slots: int, recent: Throughput, lifetime: LedgerMetrics
) -> float:
    """The setting and the measured mean job time (recent, else lifetime), the setting
    weighing as much as ``slots`` jobs against every job completed so far."""
    measured_s = recent.mean_run_s
    if measured_s is None:
        total = lifetime.completed
        measured_s = lifetime.run_ms_completed / total / 1000 if total else 0.0
    weight = lifetime.completed / (lifetime.completed + max(slots, 1))
    return max((1 - weight) * expected_s + weight * measured_s, 0.001)


def eta_seconds(
    job: Job, position: int | None, rates: QueueRates, now_ms: float | None = None,
    distance: int = 0,
) -> float | None:  # fmt: skip
    """Seconds until ``job`` is expected to finish; None when unknowable (no workers).
    ``distance``: a waiting job's (``reads.Place``)."""
    now = time.time() * 1000 if now_ms is None else now_ms
    if job.state.is_final:
        return 0.0
    if job.state == JobState.ACTIVE:
        ran_s = (now - (job.started_at or now)) / 1000
        return round(max(rates.mean_job_s - ran_s, 0.0), 1)
    if job.state != JobState.DELAYED:
        return waiting_eta_seconds(position, rates, priority=job.priority, distance=distance)
    if rates.start_rate <= 0:
        return None
    wait_s = max((job.due_at or now) - now, 0) / 1000 + 1 / rates.start_rate
    return round(wait_s + rates.mean_job_s, 1)


def drain_eta_seconds(backlog: int, rates: QueueRates) -> float | None:
    """Seconds until ``backlog`` jobs (waiting and delayed) are all done at the rate the
    queue sustains now; None with no live worker."""
    if backlog == 0:
        return 0.0
    start = rates.start_in_s(backlog - 1)
    return None if start is None else round(start + rates.mean_job_s, 1)


def waiting_eta_seconds(
    position: int | None,
    rates: QueueRates,
    active: int | None = None,
    priority: Priority = Priority.HIGH,
    distance: int = 0,
) -> float | None:
    """Seconds until a waiting job of ``priority`` with ``position`` jobs ahead should be
    done (``active``: the running jobs counted at its enqueue, when known; ``distance``:
    its tag's from the virtual time)."""
    start = rates.start_in_s(position or 0, active, priority, distance)
    return None if start is None else round(start + rates.mean_job_s, 1)


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
