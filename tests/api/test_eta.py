"""The ETA model: slots that free up, the job time setting and its blend, the rate limit;
and what it reads from a real Redis (running jobs, the active count at enqueue, the span of
observed completions)."""

from __future__ import annotations

import math
import time

import pytest
from redis.asyncio import Redis

from imagequeue_api.eta import (
    QueueRates,
    blended_job_s,
    cut_ins,
    drain_eta_seconds,
    eta_seconds,
    queue_rates,
    waiting_eta_seconds,
    with_cut_ins,
)
from imagequeue_common.contracts import JobState, Priority
from imagequeue_common.queue.jobs import Job
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.queue.occupancy import Flow, arrivals, running
from imagequeue_common.queue.reads import LedgerMetrics, Throughput
from imagequeue_common.settings import Settings, replace

NOW = 1_000_000.0


def job(state: JobState, **kw: int) -> Job:
    return Job(id="j", name="t", state=state, priority=Priority.NORMAL, user="u", payload="",
               attempts=0, max_attempts=4, created_at=0, **kw)  # type: ignore[arg-type]  # fmt: skip


def fresh(mean: float, slots: int, rate: float = math.inf, **kw: object) -> QueueRates:
    return QueueRates(mean_job_s=mean, slots=slots, rate_per_s=rate,
                      measured_at=time.monotonic(), **kw)  # type: ignore[arg-type]  # fmt: skip


def test_idle_slots_start_now_and_each_round_takes_one_job_time() -> None:
    # 5 idle slots, 45 s per image: jobs 0-4 start now (the 10/s limit spaces them 0.1 s
    # apart), 5-9 after 45 s, 10 after 90 s.
    rates = fresh(45, 5, rate=10)
    assert rates.start_rate == pytest.approx(5 / 45)
    assert [waiting_eta_seconds(p, rates) for p in (0, 4, 5, 9, 10)] == [45, 45.4, 90, 90, 135]
    assert eta_seconds(job(JobState.WAITING), 10, rates, NOW) == 135


def test_running_jobs_free_their_slots_one_job_time_after_they_started() -> None:
    # Two slots, jobs running for 30 s and 5 s of 40 s: the first frees in 10 s, the other in 35.
    rates = fresh(40, 2, running_s=(30.0, 5.0))
    assert rates.slot_free_in_s() == pytest.approx([10, 35], abs=0.1)
    assert waiting_eta_seconds(0, rates) == pytest.approx(10 + 40, abs=0.1)
    assert waiting_eta_seconds(1, rates) == pytest.approx(35 + 40, abs=0.1)
    assert waiting_eta_seconds(2, rates) == pytest.approx(10 + 40 + 40, abs=0.1)


def test_jobs_started_since_the_measurement_are_counted_as_just_started() -> None:
    # Measured with every slot idle, but the enqueue saw 5 running: a burst filled them.
    rates = fresh(2, 5)
    assert waiting_eta_seconds(0, rates) == 2
    assert waiting_eta_seconds(0, rates, active=5) == 4
    assert waiting_eta_seconds(0, rates, active=3) == 2  # two slots still free
    # Fewer running than measured: the ones nearest their end are the ones that ended.
    busy = fresh(10, 2, running_s=(9.0, 1.0))
    assert busy.slot_free_in_s(active=1) == pytest.approx([0, 9], abs=0.1)


def test_the_rate_limit_binds_with_many_slots() -> None:
    rates = fresh(1, 100, rate=10)
    assert eta_seconds(job(JobState.WAITING), 99, rates, NOW) == pytest.approx(99 / 10 + 1)


def test_a_slow_gpu_side_is_seen_in_the_throughput_when_saturated() -> None:
    busy = fresh(1, 10, rate=10, observed_per_s=2, saturated=True)
    idle = fresh(1, 10, rate=10, observed_per_s=2, saturated=False)
    assert busy.start_rate == 2
    assert idle.start_rate == 10  # a quiet minute says nothing about capacity
    assert waiting_eta_seconds(20, busy) == pytest.approx(2 * 10 / 2 + 1)


def test_higher_priorities_arriving_take_their_share_of_the_starts() -> None:
    # 10 idle slots of 1 s: 19 ahead starts after one round alone. Highs arriving at half the
    # start rate, seen for a minute, double a low job's wait; a high job is not affected.
    above = {Priority.NORMAL: ((5.0, 60.0),), Priority.LOW: ((5.0, 60.0),)}
    rates = fresh(1, 10, cut_ins=above)
    assert waiting_eta_seconds(19, rates, priority=Priority.HIGH) == 2
    assert waiting_eta_seconds(19, rates, priority=Priority.LOW) == 1 / (1 - 0.5) + 1
    # Seen for 1 s only: forecast for 1 s more, at most half a start-second of cut-ins.
    young = fresh(1, 10, cut_ins={Priority.LOW: ((5.0, 1.0),)})
    assert waiting_eta_seconds(19, young, priority=Priority.LOW) == 1 + 0.5 * 1 + 1
    # Above taking every start: still an ETA, the cut-ins capped by the span seen.
    flood = fresh(1, 10, cut_ins={Priority.LOW: ((20.0, 30.0),)})
    assert waiting_eta_seconds(19, flood, priority=Priority.LOW) == 1 + 2 * 30 + 1


def test_cut_ins_of_two_flows_solve_the_piecewise_equation() -> None:
    # Alone 10 s; one flow takes half the starts for 4 s more, one a quarter for 100 s:
    # T = 10 + 0.5 * 4 + 0.25 * T  ->  T = 16 (past the first horizon, before the second).
    assert with_cut_ins(10, [(0.25, 100), (0.5, 4)]) == pytest.approx(16)
    # Inside every horizon: T = alone / (1 - sum of shares).
    assert with_cut_ins(2, [(0.25, 100), (0.25, 50)]) == pytest.approx(4)
    # Flows that together take every start: each counts for its whole horizon.
    assert with_cut_ins(1, [(1.0, 3), (2.0, 5)]) == pytest.approx(1 + 3 + 10)
    assert with_cut_ins(7, []) == 7


def test_a_flow_that_stopped_forecasts_nothing_one_still_arriving_as_much_again() -> None:
    # A burst of 80 highs over its first 1.5 s, now 0.2 s after it began: still arriving,
    # rate x horizon = the 80 so far. The same burst 3 s later has stopped: nothing.
    arriving = {Priority.HIGH: Flow(80, 1.5, 0.0), Priority.NORMAL: Flow(0, 0.0, 0.0)}
    ins = cut_ins(arriving)
    assert ins[Priority.HIGH] == ()
    [(rate, horizon)] = ins[Priority.NORMAL]
    assert rate * horizon == pytest.approx(80)
    assert ins[Priority.LOW] == ins[Priority.NORMAL]
    assert cut_ins({Priority.HIGH: Flow(80, 4.5, 3.0)})[Priority.LOW] == ()
    # A steady 1/s trickle seen for a minute, quiet for 3 s: a pause, not an end.
    steady = cut_ins({Priority.HIGH: Flow(60, 60.0, 3.0), Priority.NORMAL: Flow(30, 60.0, 0.0)})
    assert [r for r, _ in steady[Priority.LOW]] == pytest.approx([1.0, 0.5])
    assert not Flow(0, 0.0, 0.0).live


def test_the_setting_is_the_job_time_until_measured_then_blends_out() -> None:
    none = Throughput(window_s=60, completed=0, run_ms=0)
    assert blended_job_s(2.0, 10, none, LedgerMetrics()) == 2.0
    # As many completions as slots, at 4 s: halfway between the setting and the measurement.
    recent = Throughput(window_s=60, completed=10, run_ms=40_000)
    lifetime = LedgerMetrics(completed=10, run_ms_completed=40_000)
    assert blended_job_s(2.0, 10, recent, lifetime) == pytest.approx(3.0)
    many = LedgerMetrics(completed=990, run_ms_completed=3_960_000)
    assert blended_job_s(2.0, 10, recent, many) == pytest.approx(0.01 * 2 + 0.99 * 4)
    # Nothing in the last minute: the lifetime mean stands in for it.
    assert blended_job_s(2.0, 10, none, lifetime) == pytest.approx(3.0)


def test_active_delayed_finished_and_no_workers() -> None:
    rates = fresh(40, 5)
    assert eta_seconds(job(JobState.ACTIVE, started_at=int(NOW - 15_000)), None, rates, NOW) == 25
    delayed = job(JobState.DELAYED, due_at=int(NOW + 5_000))
    assert eta_seconds(delayed, None, rates, NOW) == pytest.approx(5 + 1 / (5 / 40) + 40)
    assert eta_seconds(job(JobState.COMPLETED), None, rates, NOW) == 0
    nobody = fresh(40, 0, rate=10)
    assert eta_seconds(job(JobState.WAITING), 3, nobody, NOW) is None
    assert drain_eta_seconds(5, nobody) is None


def test_the_backlog_drains_in_rounds_of_the_slots() -> None:
    # 5 idle slots at 45 s per image: 100 jobs are 20 rounds, the last one ending at 900 s.
    slow = fresh(45, 5, rate=10)
    assert drain_eta_seconds(100, slow) == pytest.approx(900)
    fast = fresh(45, 500, rate=10)  # >= 10 x 45 slots: the limit binds
    assert drain_eta_seconds(100, fast) == pytest.approx(99 / 10 + 45)
    assert drain_eta_seconds(0, slow) == 0


@pytest.fixture
def ledger(redis: Redis, settings: Settings) -> JobLedger:
    return JobLedger(redis, replace(settings, expected_job_s=7.5))


async def add(ledger: JobLedger, job_id: str) -> None:
    await ledger.enqueue(job_id, "t", "{}", user_id="u")


async def test_the_rates_read_running_jobs_and_the_setting_from_redis(ledger: JobLedger) -> None:
    await ledger.extend("w1", '{"concurrency": 3}', [])
    for i in range(4):
        await add(ledger, f"j{i}")
    await ledger.claim("w1", 2)
    rates = await queue_rates(ledger)
    assert (rates.slots, rates.mean_job_s, len(rates.running_s)) == (3, 7.5, 2)
    assert all(0 <= ran < 5 for ran in rates.running_s)
    assert not rates.saturated
    assert rates.observed_per_s == 0
    # One slot idle: the first waiting job starts now, the next when a running one ends.
    assert waiting_eta_seconds(0, rates) == 7.5
    assert waiting_eta_seconds(1, rates) == pytest.approx(15, abs=0.2)


async def test_the_enqueue_counts_the_running_jobs(ledger: JobLedger) -> None:
    await add(ledger, "a")
    await add(ledger, "b")
    assert (await ledger.enqueue("c", "t", "{}")).active == 0
    await ledger.claim("w1", 2)
    queued = await ledger.enqueue("d", "t", "{}")
    assert (queued.position, queued.active) == (1, 2)


async def test_arrivals_are_counted_per_priority(ledger: JobLedger) -> None:
    for i, priority in enumerate([Priority.HIGH, Priority.LOW, Priority.LOW, Priority.NORMAL]):
        await ledger.enqueue(f"p{i}", "t", "{}", priority=priority)
    seen = await arrivals(ledger)
    counts = {p: flow.count for p, flow in seen.items()}
    assert counts == {Priority.HIGH: 1, Priority.NORMAL: 1, Priority.LOW: 2}
    assert all(0 <= flow.span_s <= 2 and flow.live for flow in seen.values())
    await ledger.claim("w1", 1)
    [(priority, ran)] = await running(ledger)
    assert priority == Priority.HIGH
    assert 0 <= ran < 5


async def test_a_young_queue_reports_only_the_span_it_observed(ledger: JobLedger) -> None:
    await add(ledger, "a")
    [claimed] = (await ledger.claim("w1", 1)).jobs
    await ledger.finish([FinishOp(claimed.job_id, claimed.token, "completed", "1")])
    recent = await ledger.throughput()
    assert recent.completed == 1
    assert 0 < recent.observed_s < recent.window_s  # busy for seconds, not for the minute


def test_later_newcomers_cut_in_ahead_of_a_job_deep_in_its_own_flow() -> None:
    # One slot, 1 s per job: 1 start a second. Newcomers of the same priority arrive at
    # 0.5/s and keep coming for 100 s. A user's first job (in the turn being served) is not
    # passed; a job ten turns deep is passed for all but its own turn: 10/11 of its wait.
    turns = {Priority.NORMAL: (0.5, 100.0)}
    rates = fresh(1, 1, turns=turns, increments=dict.fromkeys(Priority, 1))
    assert rates.start_in_s(9, 1, Priority.NORMAL, distance=0) == pytest.approx(10)
    deep = rates.start_in_s(9, 1, Priority.NORMAL, distance=10)
    assert deep == pytest.approx(10 / (1 - 0.5 * 10 / 11))  # T = 10 + 0.45 T
    assert rates.start_in_s(9, 1, Priority.NORMAL, distance=1) == pytest.approx(10 / 0.75)
    # Strict: another priority's newcomers are not beside it (those above are cut-ins
    # already, counted from all their arrivals; those below never pass it).
    others = fresh(1, 1, turns={Priority.HIGH: (0.5, 100.0), Priority.LOW: (0.5, 100.0)},
                   increments=dict.fromkeys(Priority, 1))  # fmt: skip
    assert others.start_in_s(9, 1, Priority.NORMAL, distance=10) == pytest.approx(10)


def test_weighted_newcomers_of_every_priority_pass_a_deep_enough_job() -> None:
    # Weights 4:2:1 → increments 60, 120, 240. A low job 240 tag units (one of its turns)
    # ahead: newcomers of every priority join the turn being served, so each passes it for
    # half its wait. The flows above count only through their newcomers.
    incs = {Priority.HIGH: 60, Priority.NORMAL: 120, Priority.LOW: 240}
    turns = dict.fromkeys(Priority, (0.2, 1000.0))
    above = {Priority.LOW: ((5.0, 1000.0),)}  # all high arrivals: not used when weighted
    rates = fresh(1, 1, turns=turns, increments=incs, strict=False, cut_ins=above)
    wait = rates.start_in_s(9, 1, Priority.LOW, distance=240)
    assert wait == pytest.approx(10 / (1 - 3 * 0.2 * 0.5))
