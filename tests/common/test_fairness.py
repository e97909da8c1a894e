"""Fair share inside a priority, weighted priorities and the per-user cap on running jobs,
on a real Redis: who is claimed when, and that every position is the claim order."""

from __future__ import annotations

import asyncio
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


async def test_a_user_arriving_mid_flood_joins_the_turn_being_served(
    redis: Redis, settings: Settings
) -> None:
    ledger = make(redis, settings)
    for i in range(50):
        await add(ledger, f"a{i}", "flooder")
    claimed = (await ledger.claim("w", 10)).jobs
    assert [j.job_id for j in claimed] == [f"a{i}" for i in range(10)]
    # The virtual time is at a9's turn, whose jobs are all claimed: the newcomer joins the
    # turn being served, and is next.
    assert await add(ledger, "late", "newcomer") == 0
    assert (await drain(ledger))[:3] == ["late", "a10", "a11"]


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
    # Weights 4:2:1 (increments 60, 120, 240): a newcomer of any priority joins the turn
    # being served; a user's next job comes one of its own turns later, a low user's after
    # four high jobs, a normal one's after two.
    assert await add(ledger, "low1", "bulk", Priority.LOW) == 1
    assert await add(ledger, "low2", "bulk", Priority.LOW) == 6
    assert await add(ledger, "n1", "regular", Priority.NORMAL) == 2
    assert await add(ledger, "n2", "regular", Priority.NORMAL) == 5
    order = await drain(ledger)
    assert order[:10] == ["h0", "low1", "n1", "h1", "h2", "n2", "h3", "h4", "low2", "h5"]


async def test_weighted_order_goes_on_as_the_flood_goes_on(
    redis: Redis, settings: Settings
) -> None:
    # A steady flood of high jobs (one more for every claim): a bulk user's three low jobs
    # start at claims 2, 6 and 11 — its first in the turn being served, then one for every
    # four or five high ones, never starved.
    ledger = make(redis, settings, priority_policy="weighted")
    for i in range(4):
        await add(ledger, f"h{i}", "premium", Priority.HIGH)
    for i in range(3):
        await add(ledger, f"low{i}", "bulk", Priority.LOW)
    at = []
    for claim in range(1, 13):
        await add(ledger, f"more{claim}", "premium", Priority.HIGH)
        [job] = (await ledger.claim("w", 1)).jobs
        if job.job_id.startswith("low"):
            at.append(claim)
    assert at == [2, 6, 11]


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
    assert [await add(ledger, "ben", "ben"), await add(ledger, "cy", "cy")] == [0, 1]
    assert [await add(ledger, f"dee{i}", "dee") for i in range(1, 4)] == [2, 4, 6]
    order = await drain(ledger)
    assert order[:10] == ["ben", "cy", "dee1", "ana6", "dee2", "ana7", "dee3", "ana8",
                          "ana9", "ana10"]  # fmt: skip


@pytest.mark.parametrize("policy", ["strict", "weighted"])
async def test_each_job_knows_how_far_its_turn_is_and_newcomers_are_counted(
    redis: Redis, settings: Settings, policy: str
) -> None:
    ledger = make(redis, settings, priority_policy=policy)
    inc = 1 if policy == "strict" else 120  # normal's weight 2 of 240
    queued = [await ledger.enqueue(f"a{i}", "t", "{}", user_id="ana") for i in range(10)]
    assert [q.distance for q in queued] == [inc * i for i in range(10)]
    newcomer = await ledger.enqueue("b", "t", "{}", user_id="ben")
    assert (newcomer.position, newcomer.distance) == (1, 0)  # in the turn being served
    claimed = (await ledger.claim("w", 3)).jobs
    assert [j.job_id for j in claimed] == ["a0", "b", "a1"]
    # The virtual time moved up one turn: every waiting job is one turn nearer.
    job = await ledger.get_job("a9")
    place = await ledger.place(job)
    assert place is not None
    assert (place.position, place.distance) == (7, inc * 8)
    prediction = await ledger.predict("cy", job.priority)
    assert (prediction.position, prediction.distance) == (0, 0)  # a1's turn is all claimed
    # Ana's first job and Ben's took the next turn; her nine others did not.
    turns = await redis.hgetall(ledger.keys.turns)
    assert sum(int(n) for n in turns.values()) == 2
    assert await ledger.place(await ledger.get_job("a0")) is None  # running, not waiting


async def test_a_turn_of_more_than_512_newcomers_keeps_its_arrival_order(
    redis: Redis, settings: Settings
) -> None:
    # 600 users' first jobs share one turn. Ties count up to 511 in arrival order; later
    # ones share the last tie and go after every earlier one (here in id order, which is
    # arrival order too). A wrapping sequence once put u512 before u000.
    ledger = make(redis, settings)
    await asyncio.gather(*(add(ledger, f"u{i:03}", f"user{i}") for i in range(600)))
    assert await drain(ledger) == [f"u{i:03}" for i in range(600)]
