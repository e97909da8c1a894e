"""The ETA arithmetic on its own: jobs ahead, sustainable start rate, mean job time."""

from __future__ import annotations

import math

import pytest

from imagequeue_api.eta import QueueRates, drain_eta_seconds, eta_seconds
from imagequeue_common.contracts import JobState, Priority
from imagequeue_common.queue.jobs import Job

NOW = 1_000_000.0


def job(state: JobState, **kw: int) -> Job:
    return Job(id="j", name="t", state=state, priority=Priority.NORMAL, user="u", payload="",
               attempts=0, max_attempts=4, created_at=0, **kw)  # type: ignore[arg-type]  # fmt: skip


def test_the_seed_figures_limit_by_slots() -> None:
    # 5 slots, 45 s per image: 0.11 starts/s (below the 10/s limit); 10 ahead → 99 s + 45 s.
    rates = QueueRates(mean_job_s=45, slots=5, rate_per_s=10)
    assert rates.start_rate == pytest.approx(5 / 45)
    assert eta_seconds(job(JobState.WAITING), 10, rates, NOW) == pytest.approx(11 * 9 + 45)


def test_the_rate_limit_binds_with_many_slots() -> None:
    rates = QueueRates(mean_job_s=1, slots=100, rate_per_s=10)
    assert eta_seconds(job(JobState.WAITING), 99, rates, NOW) == pytest.approx(100 / 10 + 1)


def test_a_slow_gpu_side_is_seen_in_the_throughput_when_saturated() -> None:
    busy = QueueRates(mean_job_s=1, slots=10, rate_per_s=10, observed_per_s=2, saturated=True)
    idle = QueueRates(mean_job_s=1, slots=10, rate_per_s=10, observed_per_s=2, saturated=False)
    assert busy.start_rate == 2
    assert idle.start_rate == 10  # a quiet minute says nothing about capacity


def test_active_delayed_finished_and_no_workers() -> None:
    rates = QueueRates(mean_job_s=40, slots=5, rate_per_s=math.inf)
    assert eta_seconds(job(JobState.ACTIVE, started_at=int(NOW - 15_000)), None, rates, NOW) == 25
    delayed = job(JobState.DELAYED, due_at=int(NOW + 5_000))
    assert eta_seconds(delayed, None, rates, NOW) == pytest.approx(5 + 1 / (5 / 40) + 40)
    assert eta_seconds(job(JobState.COMPLETED), None, rates, NOW) == 0
    nobody = QueueRates(mean_job_s=40, slots=0, rate_per_s=10)
    assert eta_seconds(job(JobState.WAITING), 3, nobody, NOW) is None


def test_the_backlog_drains_at_the_sustainable_rate() -> None:
    # The seed's arithmetic corrected: 5 slots at 45 s per image start 0.11 jobs/s, so 100
    # waiting jobs take 900 s (+ one job time), not 10 s at the 10/s limit.
    slow = QueueRates(mean_job_s=45, slots=5, rate_per_s=10)
    assert drain_eta_seconds(100, slow) == pytest.approx(100 / (5 / 45) + 45)
    fast = QueueRates(mean_job_s=45, slots=500, rate_per_s=10)  # >= 10 x 45 slots: the limit binds
    assert drain_eta_seconds(100, fast) == pytest.approx(100 / 10 + 45)
    assert drain_eta_seconds(0, slow) == 0
    assert drain_eta_seconds(5, QueueRates(mean_job_s=45, slots=0, rate_per_s=10)) is None
