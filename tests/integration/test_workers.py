"""The engine end to end: real worker processes (killed for real) on a real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from imagequeue_common.contracts import JobState
from imagequeue_common.errors import JobStateError
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings, replace
from tests.support.procs import (
    WorkerProcess,
    start_workers,
    str_hash,
    stream_events,
    wait_until,
    wait_workers_ready,
)
from tests.support.tasks import FAIL, FLAKY, RECORD, STEPS, TERMINAL, probe_key


async def run_workers(
    workers: list[WorkerProcess], redis: Redis, settings: Settings, count: int = 1, **kw: Any
) -> list[WorkerProcess]:
    """Start ``count`` worker processes and wait for their first heartbeat."""
    new = start_workers(workers, settings, count=count, **kw)
    await wait_workers_ready(redis, settings, count)
    return new


async def kick(broker: EngineBroker, task: str, **kwargs: object) -> str:
    decorated = broker.find_task(task)
    assert decorated is not None
    return (await decorated.kiq(**kwargs)).task_id


async def wait_stats(broker: EngineBroker, timeout_s: float, **expected: int) -> None:
    async def matches() -> bool:
        stats = await broker.ledger.stats()
        return all(getattr(stats, k) == v for k, v in expected.items())

    await wait_until(matches, timeout_s, f"queue stats {expected}", poll_s=0.05)


async def runs(redis: Redis, queue: str) -> dict[str, int]:
    return {k: int(v) for k, v in (await str_hash(redis, probe_key(queue, "runs"))).items()}


async def times(redis: Redis, queue: str, what: str, job_id: str) -> list[int]:
    return [int(x) for x in await redis.lrange(probe_key(queue, f"{what}:{job_id}"), 0, -1)]


async def test_three_workers_process_2000_jobs_exactly_once(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    await run_workers(workers, redis, settings, count=3)
    ids = await asyncio.gather(*(kick(broker, RECORD, value=i) for i in range(2000)))
    await wait_stats(broker, 120, completed=2000)
    counts = await runs(redis, settings.queue_name)
    assert set(counts) == set(ids)
    assert set(counts.values()) == {1}
    stats = await broker.ledger.stats()
    assert (stats.waiting, stats.active, stats.failed, stats.total) == (0, 0, 0, 2000)
    sample = [await broker.ledger.get_job(i) for i in random.sample(ids, 50)]
    assert len({job.worker for job in sample}) >= 2  # the work was shared


async def test_sigkill_mid_job_loses_nothing(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    settings = replace(settings, lease_ms=900, worker_concurrency=2)
    victim, survivor = await run_workers(workers, redis, settings, count=2)
    ids = [await kick(broker, RECORD, sleep_ms=1200) for _ in range(8)]
    await wait_stats(broker, 20, active=4)
    seconds, micros = await redis.time()
    killed_at = seconds * 1000 + micros // 1000
    victim.kill()
    # Lease deadlines as the victim left them: nobody renews them any more.
    deadlines = dict(await redis.zrange(broker.ledger.keys.active, 0, -1, withscores=True))  # type: ignore[arg-type]
    await wait_stats(broker, 60, completed=8)
    counts = await runs(redis, settings.queue_name)
    stalled = [i for i in ids if (await broker.ledger.get_job(i)).stalls]
    assert len(stalled) == 2  # the victim's two slots
    done = await str_hash(redis, probe_key(settings.queue_name, "done"))
    for job_id in ids:
        # A stalled job ran again (once more if the victim had started it before dying);
        # every other job ran once; every job finished a run.
        assert counts[job_id] in ((1, 2) if job_id in stalled else (1,)), counts
        assert int(done[job_id]) == 1, done
    events = await stream_events(redis, broker.ledger.keys.events)
    stalled_at = {e["job"]: int(eid.split("-")[0]) for eid, e in events if e["event"] == "stalled"}
    for job_id in stalled:
        deadline = int(deadlines[job_id])
        # The lease runs out at most one lease after the kill, and the survivor's heartbeat
        # (every third of a lease) returns the job soon after; 400 ms of slack for a busy CI.
        assert deadline - killed_at <= settings.lease_ms, (deadline, killed_at)
        assert 0 <= stalled_at[job_id] - deadline <= settings.lease_ms // 3 + 400, (
            stalled_at[job_id],
            deadline,
        )
    assert survivor.proc is not None
    assert survivor.proc.poll() is None


async def test_slow_but_alive_job_is_never_run_twice(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    settings = replace(settings, lease_ms=600)
    await run_workers(workers, redis, settings, count=2)
    job_id = await kick(broker, RECORD, sleep_ms=2400)  # four leases long
    await wait_stats(broker, 20, completed=1)
    assert (await runs(redis, settings.queue_name)) == {job_id: 1}
    assert (await broker.ledger.get_job(job_id)).stalls == 0


async def test_retries_back_off_exponentially_then_dead_letter(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    settings = replace(settings, backoff_delay_ms=200)
    await run_workers(workers, redis, settings)
    job_id = await kick(broker, FAIL)
    await wait_stats(broker, 20, failed=1)
    starts = await times(redis, settings.queue_name, "starts", job_id)
    ends = await times(redis, settings.queue_name, "ends", job_id)
    gaps = [start - end for start, end in zip(starts[1:], ends, strict=False)]
    assert len(starts) == 4  # 1 run + 3 retries
    for gap, delay in zip(gaps, (200, 400, 800), strict=True):
        assert delay - 10 <= gap <= delay + 400, gaps
    job = await broker.ledger.get_job(job_id)
    assert job.state is JobState.FAILED
    assert job.attempts == 4
    assert "boom on attempt 4" in (job.error or "")
    assert "gave up after 4 attempts" in (job.error or "")
    assert FAIL in job.payload


async def test_a_run_s_end_is_logged_in_the_seed_s_words(
    broker: EngineBroker,
    redis: Redis,
    settings: Settings,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    settings = replace(settings, backoff_delay_ms=10)
    await run_workers(workers, redis, settings, log_dir=tmp_path)
    failing = await kick(broker, FAIL)
    fine = await kick(broker, RECORD, value=7)
    await wait_stats(broker, 20, failed=1, completed=1)
    workers[0].stop()
    [log_file] = tmp_path.glob("worker-*.log")
    text = log_file.read_text()
    assert f"✗ Job {failing} failed after 1 attempts: RetryableJobError: boom on attempt 1" in text
    assert "- retry 1/3 in 0.0s" in text
    assert "- retry 3/3 in 0.0s" in text
    assert f"✗ Job {failing} failed after 4 attempts" in text
    assert "moved to the dead-letter queue" in text
    assert f"✓ Job {fine} completed in" in text
    assert "Exception found while executing function" not in text  # no traceback per retry
    assert "Executing task" not in text


async def test_log_level_warning_keeps_only_what_went_wrong(
    broker: EngineBroker,
    redis: Redis,
    settings: Settings,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    settings = replace(settings, backoff_delay_ms=10, job_retries=0, log_level="warning")
    await run_workers(workers, redis, settings, log_dir=tmp_path)
    fine = await kick(broker, RECORD, value=7)
    failing = await kick(broker, FAIL)
    await wait_stats(broker, 20, failed=1, completed=1)
    workers[0].stop()
    [log_file] = tmp_path.glob("worker-*.log")
    text = log_file.read_text()
    assert f"✗ Job {failing} failed after 1 attempts" in text
    assert "moved to the dead-letter queue" in text
    assert f"Job {fine}" not in text  # a run that went well is not logged at warning


async def test_fixed_backoff(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    settings = replace(settings, backoff_delay_ms=150, backoff_type="fixed")
    await run_workers(workers, redis, settings)
    decorated = broker.find_task(FAIL)
    assert decorated is not None
    job_id = (await decorated.kicker().with_labels(max_attempts=3).kiq()).task_id
    await wait_stats(broker, 20, failed=1)
    starts = await times(redis, settings.queue_name, "starts", job_id)
    ends = await times(redis, settings.queue_name, "ends", job_id)
    gaps = [start - end for start, end in zip(starts[1:], ends, strict=False)]
    assert len(starts) == 3
    assert all(140 <= gap <= 550 for gap in gaps), gaps


async def test_retry_after_is_a_floor_for_the_delay(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    settings = replace(settings, backoff_delay_ms=10)
    await run_workers(workers, redis, settings)
    decorated = broker.find_task(FAIL)
    assert decorated is not None
    job_id = (await decorated.kicker().with_labels(max_attempts=2).kiq(retry_after_s=0.5)).task_id
    await wait_stats(broker, 20, failed=1)
    starts = await times(redis, settings.queue_name, "starts", job_id)
    ends = await times(redis, settings.queue_name, "ends", job_id)
    assert starts[1] - ends[0] >= 490


async def test_terminal_error_skips_retries(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    await run_workers(workers, redis, settings)
    job_id = await kick(broker, TERMINAL)
    await wait_stats(broker, 20, failed=1)
    assert (await runs(redis, settings.queue_name)) == {job_id: 1}
    job = await broker.ledger.get_job(job_id)
    assert "400 Bad Request" in (job.error or "")
    assert "gave up" not in (job.error or "")


async def test_a_flaky_job_completes_on_a_retry_and_dead_letters_can_be_retried(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    settings = replace(settings, backoff_delay_ms=20)
    await run_workers(workers, redis, settings)
    flaky = await kick(broker, FLAKY, fail_runs=2)
    doomed = await kick(broker, FLAKY, fail_runs=4)
    await wait_stats(broker, 20, completed=1, failed=1)
    assert (await broker.ledger.get_job(flaky)).attempts == 3
    await broker.ledger.retry_failed(doomed)  # attempts reset: it fails runs 1-4 again
    await wait_stats(broker, 20, failed=1, waiting=0, delayed=0, active=0)
    assert (await runs(redis, settings.queue_name))[doomed] == 8


async def test_unknown_task_is_dead_lettered_with_a_clear_error(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    await run_workers(workers, redis, settings)
    await broker.ledger.enqueue("ghost", "no.such.task", '{"task_id":"ghost"}')
    await wait_stats(broker, 20, failed=1)
    assert "could not run" in ((await broker.ledger.get_job("ghost")).error or "")


async def test_one_claim_per_free_slot_no_hoarding(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    settings = replace(settings, worker_concurrency=3)
    await run_workers(workers, redis, settings)
    for _ in range(10):
        await kick(broker, RECORD, sleep_ms=700)
    await wait_stats(broker, 20, active=3)
    stats = await broker.ledger.stats()
    assert stats.waiting == 7  # nothing claimed ahead of a free slot
    await wait_stats(broker, 30, completed=10)
    peak = await redis.zscore(probe_key(settings.queue_name, "peak"), "running")
    assert peak == 3


async def test_rate_limit_holds_over_every_sliding_window(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    limit, window = 20, 250
    settings = replace(settings, rate_limit_max=limit, rate_limit_duration_ms=window)
    await run_workers(workers, redis, settings, count=4)  # 4 workers x 5 slots
    ids = await asyncio.gather(*(kick(broker, RECORD) for _ in range(300)))
    await wait_stats(broker, 60, completed=300)
    starts = sorted([(await broker.ledger.get_job(i)).started_at or 0 for i in ids])
    busiest = max(sum(1 for t in starts[i:] if t < s + window) for i, s in enumerate(starts))
    assert busiest <= limit
    span = starts[-1] - starts[0]
    # 300 starts at 20 per 250 ms cannot take less than 14 windows; limited, not starved.
    assert 14 * window <= span + window <= 16 * window * 1.25


async def test_cancelling_an_active_job_stops_it_at_the_next_progress_point(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    await run_workers(workers, redis, settings)
    job_id = await kick(broker, STEPS, steps=100, step_ms=50)

    async def moving() -> bool:
        return (await broker.ledger.get_job(job_id)).progress >= 3

    await wait_until(moving, 20, "progress")
    assert await broker.ledger.cancel(job_id) == "requested"
    await wait_stats(broker, 20, cancelled=1, active=0)
    job = await broker.ledger.get_job(job_id)
    assert job.state is JobState.CANCELLED
    assert job.progress < 100
    events = await stream_events(redis, broker.ledger.keys.events)
    progress = [int(e["progress"]) for _, e in events if e["event"] == "progress"]
    assert progress == sorted(progress)
    assert len(progress) >= 3


async def test_counts_stay_exact_through_a_concurrent_storm(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    settings = replace(settings, backoff_delay_ms=30, lease_ms=1000)
    await run_workers(workers, redis, settings, count=2)
    ledger = broker.ledger
    enqueued: list[str] = []
    for batch in range(10):
        kicks = []
        for _ in range(60):
            roll = random.random()
            if roll < 0.6:
                kicks.append(kick(broker, RECORD, sleep_ms=random.randint(0, 20)))
            elif roll < 0.8:
                kicks.append(kick(broker, FLAKY, fail_runs=random.randint(1, 5)))
            else:
                kicks.append(kick(broker, STEPS, steps=3, step_ms=10))
        enqueued += await asyncio.gather(*kicks)
        cancels = random.sample(enqueued, 15)
        await asyncio.gather(*(_try_cancel(ledger, j) for j in cancels), ledger.retry_all_failed())
        # Nothing is being enqueued now, while workers keep moving jobs between states:
        # every job must still be counted exactly once.
        stats = await ledger.stats()
        assert stats.total + stats.cancelled == len(enqueued), (batch, stats)
    await wait_stats(broker, 120, waiting=0, active=0, delayed=0)
    stats = await ledger.stats()
    truth = dict.fromkeys(JobState, 0)
    for job_id in enqueued:
        job = await ledger.get_job(job_id)
        truth[job.state] += 1
        assert await redis.zscore(_set_of(ledger, job.state), job_id) is not None
    assert (stats.completed, stats.failed, stats.cancelled) == (
        truth[JobState.COMPLETED], truth[JobState.FAILED], truth[JobState.CANCELLED]
    )  # fmt: skip
    assert stats.total + stats.cancelled == len(enqueued)


async def _try_cancel(ledger: JobLedger, job_id: str) -> None:
    with contextlib.suppress(JobStateError):  # already finished: fine in a storm
        await ledger.cancel(job_id)


def _set_of(ledger: JobLedger, state: JobState) -> str:
    return str(getattr(ledger.keys, state.value))


async def test_graceful_stop_finishes_running_jobs_and_gives_back_the_rest(
    broker: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess]
) -> None:
    [worker] = await run_workers(workers, redis, settings)
    for _ in range(8):
        await kick(broker, RECORD, sleep_ms=800)
    await wait_stats(broker, 20, active=5)
    assert len(await broker.ledger.live_workers()) == 1
    assert worker.stop() is not None
    # Gone from the live workers the moment it exits, not a lease (or three) later.
    assert await broker.ledger.live_workers() == []
    stats = await broker.ledger.stats()
    started = await runs(redis, settings.queue_name)
    done = await str_hash(redis, probe_key(settings.queue_name, "done"))
    assert stats.active == 0
    assert started.keys() == done.keys()  # every run that began, ended
    assert stats.completed == len(started) >= 1
    assert stats.waiting == 8 - stats.completed
