"""Fair share inside a priority, weighted priorities and the per-user cap on running jobs,
on a real Redis: who is claimed when, and that every position is the claim order."""

from __future__ import annotations

import random

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import Priority
from imagequeue_common.queue.admin import QueueAdmin
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.settings import Settings, replace


def make(redis: Redis, settings: Settings, **changes: object) -> JobLedger:
    return JobLedger(redis, replace(settings, **changes))


async def add(
    ledger: JobLedger, job_id: str, user: str, priority: Priority = Priority.NORMAL
) -> int | None:
    queued = await ledger.enqueue(job_id, "t", "{}", user_id=user, priority=priority)
    return queued.position


async def drain(ledger: JobLedger, worker: str = "w") -> list[str]:
    """Claim one job at a time until none is left to claim; the ids in claim order."""
    order = []
    while jobs := (await ledger.claim(worker, 1)).jobs:
        order += [job.job_id for job in jobs]
    return order


def done(job_id: str, token: str) -> FinishOp:
    return FinishOp(job_id, token, "completed", "{}", "", "")


async def test_a_user_s_one_job_waits_one_turn_behind_another_s_hundred(
    redis: Redis, settings: Settings
) -> None:
    ledger = make(redis, settings)
    for i in range(100):
        await add(ledger, f"a{i}", "flooder")
    assert await add(ledger, "b", "bea") == 1
    assert await add(ledger, "c", "cy") == 2
    order = await drain(ledger)
    assert order[:5] == ["a0", "b", "c", "a1", "a2"]
    assert order[5:] == [f"a{i}" for i in range(3, 100)]


async def test_a_user_arriving_mid_flood_is_next_after_the_current_turn(
    redis: Redis, settings: Settings
) -> None:
    ledger = make(redis, settings)
    for i in range(50):
        await add(ledger, f"a{i}", "flooder")
    claimed = (await ledger.claim("w", 10)).jobs
    assert [j.job_id for j in claimed] == [f"a{i}" for i in range(10)]
    # The virtual time is at a9's turn: the newcomer shares a10's turn, after it.
    assert await add(ledger, "late", "newcomer") == 1
    assert (await drain(ledger))[:3] == ["a10", "late", "a11"]


async def test_users_take_turns_and_each_keeps_its_own_order(
    redis: Redis, settings: Settings
) -> None:
    ledger = make(redis, settings)
    for user in "xyz":
        for i in range(3):
            await add(ledger, f"{user}{i}", user)
    assert await drain(ledger) == ["x0", "y0", "z0", "x1", "y1", "z1", "x2", "y2", "z2"]


async def test_strict_priority_still_serves_every_higher_job_first(
    redis: Redis, settings: Settings
) -> None:
    ledger = make(redis, settings)
    await add(ledger, "low", "l", Priority.LOW)
    for i in range(3):
        await add(ledger, f"h{i}", "h", Priority.HIGH)
    await add(ledger, "n", "n", Priority.NORMAL)
    await add(ledger, "h-other", "h2", Priority.HIGH)
    assert await drain(ledger) == ["h0", "h-other", "h1", "h2", "n", "low"]


async def test_weighted_priorities_give_a_low_job_its_turn_under_a_high_flood(
    redis: Redis, settings: Settings
) -> None:
    ledger = make(redis, settings, priority_policy="weighted")
    for i in range(40):
        await add(ledger, f"h{i}", "premium", Priority.HIGH)
    # Weights 4:2:1 — a low job counts as four high ones, a normal one as two.
    assert await add(ledger, "low", "bulk", Priority.LOW) == 4
    assert await add(ledger, "normal", "regular", Priority.NORMAL) == 2
    order = await drain(ledger)
    assert order.index("normal") == 2
    assert order.index("low") == 5


async def test_weighted_order_goes_on_as_the_flood_goes_on(
    redis: Redis, settings: Settings
) -> None:
    # A steady flood of high jobs: the low job's wait is bounded (four high turns).
    ledger = make(redis, settings, priority_policy="weighted")
    for i in range(4):
        await add(ledger, f"h{i}", "premium", Priority.HIGH)
    claimed = 0
    await add(ledger, "low", "bulk", Priority.LOW)
    while True:
        await add(ledger, f"more{claimed}", "premium", Priority.HIGH)
        [job] = (await ledger.claim("w", 1)).jobs
        claimed += 1
        if job.job_id == "low":
            break
        assert claimed < 10
    assert claimed == 5


@pytest.mark.parametrize("policy", ["strict", "weighted"])
async def test_every_position_is_the_number_of_jobs_claimed_before_it(
    redis: Redis, settings: Settings, policy: str
) -> None:
    ledger = make(redis, settings, priority_policy=policy)
    rng = random.Random(20261202)
    users = [f"u{i}" for i in range(12)]
    count = 0
    for _ in range(400):
        if rng.random() < 0.8:
            user = rng.choice(users[: rng.randint(1, len(users))])  # some users much busier
            await add(ledger, f"j{count}", user, rng.choice(list(Priority)))
            count += 1
        else:
            await ledger.claim("w", rng.randint(1, 2))
    waiting = [str(i) for i in await redis.zrange(ledger.keys.waiting, 0, -1)]
    positions = {job_id: await ledger.position(job_id) for job_id in waiting}
    order = await drain(ledger)
    assert len(order) == len(waiting) > 50
    assert {job_id: order.index(job_id) for job_id in waiting} == positions


async def test_a_user_at_the_cap_is_passed_over_until_a_run_ends(
    redis: Redis, settings: Settings
) -> None:
    ledger = make(redis, settings, user_max_active=2)
    for i in range(10):
        await add(ledger, f"a{i}", "flooder")
    for i in range(3):
        await add(ledger, f"b{i}", "bea")
    first = (await ledger.claim("w", 5)).jobs
    assert [j.job_id for j in first] == ["a0", "b0", "a1", "b1"]
    stats = await ledger.stats()
    assert (stats.waiting, stats.active, stats.users_waiting, stats.users_active) == (9, 4, 2, 2)
    # Only the capped user's jobs are left: nothing to claim, and the worker may block.
    nothing = await ledger.claim("w", 5)
    assert (nothing.status, nothing.jobs) == ("empty", [])
    assert await redis.llen(ledger.keys.marker) == 0
    # One of the flooder's runs ends: one parked job is back in its place, a worker is woken.
    a0 = next(j for j in first if j.job_id == "a0")
    assert await ledger.finish([done("a0", a0.token)]) == [True]
    assert await redis.llen(ledger.keys.marker) == 1
    again = await ledger.claim("w", 5)
    assert [j.job_id for j in again.jobs] == ["a2"]


async def test_the_cap_counts_runs_across_workers_and_frees_on_every_way_out(
    redis: Redis, settings: Settings
) -> None:
    ledger = make(redis, settings, user_max_active=1)
    for i in range(4):
        await add(ledger, f"a{i}", "flooder")
    [a0] = (await ledger.claim("w1", 1)).jobs
    assert (await ledger.claim("w2", 2)).jobs == []  # another worker: the cap holds
    # Released by a stopping worker: back in its place, and the slot is free again.
    assert await ledger.release([(a0.job_id, a0.token)]) == 1
    [again] = (await ledger.claim("w2", 2)).jobs
    assert again.job_id == "a0"
    # A retry frees the slot too (the job waits for its due time).
    retry = FinishOp("a0", again.token, "retry", "60000", "boom", "")
    [next_one] = (await ledger.claim("w1", 2, [retry])).jobs
    assert next_one.job_id == "a1"
    assert await redis.zscore(ledger.keys.user_active, "flooder") == 1


async def test_cancelling_or_removing_a_parked_job_leaves_every_count_right(
    redis: Redis, settings: Settings
) -> None:
    ledger = make(redis, settings, user_max_active=1)
    for i in range(3):
        await add(ledger, f"a{i}", "flooder")
    [a0] = (await ledger.claim("w", 3)).jobs
    assert await redis.zcard(ledger.keys.parked("flooder")) == 2
    await ledger.cancel("a1")
    await QueueAdmin(ledger).remove("a2")
    assert await redis.zcard(ledger.keys.parked("flooder")) == 0
    stats = await ledger.stats()
    assert (stats.waiting, stats.users_waiting) == (0, 0)
    assert await ledger.finish([done("a0", a0.token)]) == [True]
    assert (await ledger.stats()).users_active == 0
    assert await redis.zcard(ledger.keys.user_active) == 0


async def test_the_readme_s_worked_example(redis: Redis, settings: Settings) -> None:
    ledger = make(redis, settings)
    for i in range(1, 101):
        await add(ledger, f"ana{i}", "ana")
    assert [j.job_id for j in (await ledger.claim("w", 5)).jobs] == [f"ana{i}" for i in range(1, 6)]
    assert [await add(ledger, "ben", "ben"), await add(ledger, "cy", "cy")] == [1, 2]
    assert [await add(ledger, f"dee{i}", "dee") for i in range(1, 4)] == [3, 5, 7]
    order = await drain(ledger)
    assert order[:10] == ["ana6", "ben", "cy", "dee1", "ana7", "dee2", "ana8", "dee3",
                          "ana9", "ana10"]  # fmt: skip
