"""Fair share, the per-user cap and weighted priorities with real worker processes: the order
and overlap of runs as the tasks themselves recorded them (Redis TIME at start and end)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings, replace
from imagequeue_worker.app import build_broker
from tests.support.procs import WorkerProcess, start_workers, wait_until, wait_workers_ready
from tests.support.tasks import RECORD, probe_key, register_test_tasks

pytestmark = pytest.mark.slow


@pytest.fixture
async def open_broker() -> AsyncIterator[list[EngineBroker]]:
    """Brokers a test builds with its own settings (the producer's fairness policy must be
    the workers'); shut down at the end."""
    opened: list[EngineBroker] = []
    yield opened
    for broker in opened:
        await broker.shutdown()


async def producer(opened: list[EngineBroker], settings: Settings) -> EngineBroker:
    broker = build_broker(settings)
    register_test_tasks(broker)
    await broker.startup()
    opened.append(broker)
    return broker


async def kick(broker: EngineBroker, user: str, priority: str = "normal", **kw: Any) -> str:
    task = broker.find_task(RECORD)
    assert task is not None
    sent = await task.kicker().with_labels(user_id=user, priority=priority).kiq(**kw)
    return sent.task_id


async def started(redis: Redis, queue: str) -> list[str]:
    """Job ids in the order their runs started."""
    return [str(i) for i in await redis.lrange(probe_key(queue, "order"), 0, -1)]


async def span(redis: Redis, queue: str, job_id: str) -> tuple[int, int]:
    start = await redis.lindex(probe_key(queue, f"starts:{job_id}"), 0)
    end = await redis.lindex(probe_key(queue, f"ends:{job_id}"), 0)
    assert start is not None
    assert end is not None
    return int(start), int(end)


def most_at_once(spans: list[tuple[int, int]]) -> int:
    """The largest number of runs that overlapped."""
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in edges:  # an end at the same ms as a start comes first (-1 < 1)
        running += step
        peak = max(peak, running)
    return peak


async def test_twenty_users_each_start_within_one_turn_of_a_flood(
    open_broker: list[EngineBroker], redis: Redis, settings: Settings,
    workers: list[WorkerProcess],
) -> None:  # fmt: skip
    broker = await producer(open_broker, settings)
    queue = settings.queue_name
    start_workers(workers, settings, count=2)  # 10 slots
    await wait_workers_ready(redis, settings, 2)
    flood = [await kick(broker, "flooder", sleep_ms=100) for _ in range(100)]

    async def some_started() -> bool:
        return len(await started(redis, queue)) >= 10

    await wait_until(some_started, 30, "the flood to start")
    # Twenty users arrive one after another while the flood runs; each notes how many runs
    # had started when it arrived.
    arrived: dict[str, int] = {}
    for i in range(20):
        before = len(await started(redis, queue))
        arrived[await kick(broker, f"user{i}", sleep_ms=100)] = before

    async def singles_started() -> bool:
        return set(arrived) <= set(await started(redis, queue))

    await wait_until(singles_started, 30, "the twenty single jobs to start")
    order = await started(redis, queue)
    passed = {job_id: [j for j in order[before:order.index(job_id)] if j in flood]
              for job_id, before in arrived.items()}  # fmt: skip
    # Under FIFO, 80-90 of the flood's jobs would start before the last of them. Fair share
    # lets one job of the flooder's by each newcomer (its turn being served), and one more
    # when a run claimed just before the arrival was noted only after it.
    assert max(len(jobs) for jobs in passed.values()) <= 2, passed


async def test_the_cap_on_running_jobs_holds_across_three_workers(
    open_broker: list[EngineBroker], redis: Redis, settings: Settings,
    workers: list[WorkerProcess],
) -> None:  # fmt: skip
    settings = replace(settings, user_max_active=2)
    broker = await producer(open_broker, settings)
    start_workers(workers, settings, count=3, user_max_active=2)  # 15 slots
    await wait_workers_ready(redis, settings, 3)
    jobs: dict[str, list[str]] = {"flooder": [], **{f"user{i}": [] for i in range(4)}}
    for user, ids in jobs.items():
        for _ in range(24 if user == "flooder" else 3):
            ids.append(await kick(broker, user, sleep_ms=150))

    async def all_done() -> bool:
        return (await broker.ledger.stats()).completed == 36

    await wait_until(all_done, 60, "every job to finish")
    for user, ids in jobs.items():
        peak = most_at_once([await span(redis, settings.queue_name, i) for i in ids])
        assert peak == 2, (user, peak)  # never more, and the cap's slots were used
    stats = await broker.ledger.stats()
    assert (stats.waiting, stats.active, stats.users_waiting, stats.users_active) == (0, 0, 0, 0)


@pytest.mark.parametrize("policy", ["weighted", "strict"])
async def test_a_low_job_under_a_steady_flood_of_high_ones(
    open_broker: list[EngineBroker], redis: Redis, settings: Settings,
    workers: list[WorkerProcess], policy: str,
) -> None:  # fmt: skip
    settings = replace(settings, priority_policy=policy, worker_concurrency=2)
    broker = await producer(open_broker, settings)
    queue = settings.queue_name
    start_workers(workers, settings, priority_policy=policy)
    await wait_workers_ready(redis, settings, 1)
    for _ in range(10):
        await kick(broker, "premium", "high", sleep_ms=50)
    low = await kick(broker, "bulk", "low", sleep_ms=50)
    kicked_at = len(await started(redis, queue))
    # Keep ten high jobs waiting for as long as 60 high runs take.
    while len(order := await started(redis, queue)) < kicked_at + 60 and low not in order:
        while (await broker.ledger.stats()).waiting < 11:
            await kick(broker, "premium", "high", sleep_ms=50)
        await asyncio.sleep(0.02)
    order = await started(redis, queue)
    if policy == "strict":
        assert low not in order  # the seed's order: a low job waits out every high one
        return
    highs_first = order[kicked_at : order.index(low)]
    # Weights 4:1: four high turns before the low job, plus the two runs claimed already.
    assert len(highs_first) <= 6, len(highs_first)
