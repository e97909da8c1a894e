"""Deadlines to start, de-duplication and the queue's length limit, on a real Redis: a job
past its deadline never runs and ends ``expired``; one key, one unfinished job; a full queue
refuses with nothing written."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import CharacterRef, JobState, PoseRef
from imagequeue_common.errors import QueueFullError, UserQuotaError
from imagequeue_common.generation import add_image_generation_job
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.settings import Settings, replace
from imagequeue_worker.app import build_broker


async def server_ms(redis: Redis) -> int:
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def until_server_time(redis: Redis, ms: int) -> None:
    """Poll Redis' own clock (the engine's) until it reads ``ms`` or later."""
    limit = time.monotonic() + 5
    while await server_ms(redis) < ms:
        assert time.monotonic() < limit, "Redis' clock did not reach the deadline"
        await asyncio.sleep(0.005)


async def state_of(ledger: JobLedger, job_id: str) -> JobState:
    return (await ledger.get_job(job_id)).state


def done(job_id: str, token: str) -> FinishOp:
    return FinishOp(job_id, token, "completed", "{}", "", "")


async def test_a_job_not_started_by_its_deadline_expires_and_never_runs(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, replace(settings, user_max_pending=1))
    await ledger.enqueue("late", "t", "{}", user_id="u", start_deadline_ms=50)
    job = await ledger.get_job("late")
    assert job.start_by is not None
    assert job.start_by - job.created_at == 50
    await until_server_time(redis, job.start_by)
    requeued, dead = await ledger.recover_stalled()  # the heartbeat's sweep
    assert (requeued, dead) == ([], [])
    job = await ledger.get_job("late")
    assert job.state is JobState.EXPIRED
    assert job.error == "not started before its deadline"
    assert job.finished_at is not None
    assert job.start_by is not None
    assert job.finished_at >= job.start_by
    assert (await ledger.claim("w", 5)).jobs == []
    stats = await ledger.stats()
    assert (stats.waiting, stats.expired, stats.total, stats.users_waiting) == (0, 1, 0, 0)
    assert (await ledger.metrics()).expired == 1
    events = await redis.xrange(ledger.keys.events) or []
    assert [fields["event"] for _, fields in events if fields] == ["waiting", "expired"]
    assert await redis.zcard(ledger.keys.deadlines) == 0
    # Its user's quota of one unfinished job is free again.
    await ledger.enqueue("next", "t", "{}", user_id="u")


async def test_a_claim_takes_no_job_past_its_deadline_even_unswept(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, settings)
    await ledger.enqueue("late", "t", "{}", user_id="a", start_deadline_ms=20)
    await ledger.enqueue("fine", "t", "{}", user_id="b", start_deadline_ms=600_000)
    await ledger.enqueue("any", "t", "{}", user_id="c")
    start_by = (await ledger.get_job("late")).start_by
    assert start_by is not None
    await until_server_time(redis, start_by)
    claimed = (await ledger.claim("w", 3)).jobs
    assert [j.job_id for j in claimed] == ["fine", "any"]
    assert await state_of(ledger, "late") is JobState.EXPIRED
    # Claimed in time, a job's deadline is dropped: it runs to its end.
    assert await redis.zcard(ledger.keys.deadlines) == 0
    tokens = {j.job_id: j.token for j in claimed}
    await ledger.finish([done("fine", tokens["fine"])])
    assert await state_of(ledger, "fine") is JobState.COMPLETED


@pytest.mark.parametrize("user_max_active", [0, 1])
async def test_expiry_in_the_claim_s_scan_keeps_the_order(
    redis: Redis, settings: Settings, user_max_active: int
) -> None:
    # With a cap the claim walks the waiting set instead of popping it: the same outcome.
    ledger = JobLedger(redis, replace(settings, user_max_active=user_max_active))
    await ledger.enqueue("a1", "t", "{}", user_id="a")
    await ledger.enqueue("late", "t", "{}", user_id="b", start_deadline_ms=20)
    await ledger.enqueue("c1", "t", "{}", user_id="c")
    start_by = (await ledger.get_job("late")).start_by
    assert start_by is not None
    await until_server_time(redis, start_by)
    # The sweep at the claim's start comes first, so this is the in-scan check only when
    # the sweep has no room; either way the job is never leased.
    claimed = (await ledger.claim("w", 3)).jobs
    assert [j.job_id for j in claimed] == ["a1", "c1"]
    assert (await ledger.stats()).expired == 1


async def test_a_delayed_job_expires_before_its_due_time(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, settings)
    queued = await ledger.enqueue("d", "t", "{}", delay_ms=60_000, start_deadline_ms=20)
    assert queued.state is JobState.DELAYED
    start_by = (await ledger.get_job("d")).start_by
    assert start_by is not None
    await until_server_time(redis, start_by)
    assert (await ledger.claim("w", 1)).jobs == []
    assert await state_of(ledger, "d") is JobState.EXPIRED
    stats = await ledger.stats()
    assert (stats.delayed, stats.expired) == (0, 1)


async def test_cancel_remove_and_clean_take_the_deadline_and_expired_jobs_along(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, settings)
    await ledger.enqueue("c", "t", "{}", start_deadline_ms=600_000)
    await ledger.cancel("c")
    assert await redis.zcard(ledger.keys.deadlines) == 0
    await ledger.enqueue("x", "t", "{}", start_deadline_ms=10)
    start_by = (await ledger.get_job("x")).start_by
    assert start_by is not None
    await until_server_time(redis, start_by)
    await ledger.recover_stalled()
    assert await state_of(ledger, "x") is JobState.EXPIRED
    report = await ledger.clean(keep_completed_ms=0, keep_failed_ms=0)
    assert (report.cancelled, report.expired) == (1, 1)
    assert await redis.exists(ledger.keys.job("x"), ledger.keys.job("c")) == 0
    assert await redis.zcard(ledger.keys.expired) == 0


async def test_a_released_job_that_never_ran_keeps_its_deadline(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, settings)
    await ledger.enqueue("r", "t", "{}", start_deadline_ms=100)
    (claimed,) = (await ledger.claim("w", 1)).jobs
    assert await redis.zcard(ledger.keys.deadlines) == 0
    assert await ledger.release([(claimed.job_id, claimed.token)]) == 1
    start_by = (await ledger.get_job("r")).start_by
    assert start_by is not None
    await until_server_time(redis, start_by)
    assert (await ledger.claim("w", 1)).jobs == []
    assert await state_of(ledger, "r") is JobState.EXPIRED


async def test_one_key_has_one_unfinished_job(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, settings)
    first = await ledger.enqueue("j1", "t", "{}", user_id="u", dedup_key="char:pose")
    assert (first.job_id, first.duplicate, first.position) == ("j1", False, 0)
    again = await ledger.enqueue("j2", "t", "{}", user_id="u", dedup_key="char:pose")
    assert (again.job_id, again.duplicate, again.position) == ("j1", True, 0)
    assert await redis.exists(ledger.keys.job("j2")) == 0
    other = await ledger.enqueue("j3", "t", "{}", user_id="u", dedup_key="char:other")
    assert (other.job_id, other.duplicate) == ("j3", False)
    (claimed, _) = (await ledger.claim("w", 2)).jobs
    assert claimed.job_id == "j1"
    running = await ledger.enqueue("j4", "t", "{}", user_id="u", dedup_key="char:pose")
    assert (running.job_id, running.state, running.position) == ("j1", JobState.ACTIVE, None)
    await ledger.finish([done("j1", claimed.token)])
    after = await ledger.enqueue("j5", "t", "{}", user_id="u", dedup_key="char:pose")
    assert (after.job_id, after.duplicate) == ("j5", False)
    await ledger.cancel("j5")
    fresh = await ledger.enqueue("j6", "t", "{}", user_id="u", dedup_key="char:pose")
    assert (fresh.job_id, fresh.duplicate) == ("j6", False)
    stats = await ledger.stats()
    assert (stats.waiting, stats.active) == (1, 1)  # j6, and j3 claimed beside j1
    # Without a key, nothing is de-duplicated.
    assert not (await ledger.enqueue("j7", "t", "{}", user_id="u")).duplicate
    assert await redis.hgetall(ledger.keys.dedup) == {"char:other": "j3", "char:pose": "j6"}


async def test_an_expired_or_retrying_job_under_a_key(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, settings)
    await ledger.enqueue("e1", "t", "{}", dedup_key="k", start_deadline_ms=10)
    start_by = (await ledger.get_job("e1")).start_by
    assert start_by is not None
    await until_server_time(redis, start_by)
    await ledger.recover_stalled()
    assert not (await ledger.enqueue("e2", "t", "{}", dedup_key="k")).duplicate
    (claimed,) = (await ledger.claim("w", 1)).jobs
    await ledger.finish([FinishOp("e2", claimed.token, "retry", "60000", "boom", "")])
    # Delayed for its retry, the job is still unfinished: it is the key's job.
    retrying = await ledger.enqueue("e3", "t", "{}", dedup_key="k")
    assert (retrying.job_id, retrying.state, retrying.duplicate) == ("e2", JobState.DELAYED, True)


async def test_a_full_queue_refuses_and_writes_nothing(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, settings)
    await ledger.enqueue("q1", "t", "{}", max_queued=2)
    await ledger.enqueue("q2", "t", "{}", delay_ms=60_000, max_queued=2)
    before = sorted([k async for k in redis.scan_iter(match=f"{ledger.keys.prefix}*")])
    with pytest.raises(QueueFullError, match="the queue is full: 2 jobs are waiting"):
        await ledger.enqueue("q3", "t", "{}", user_id="u", ref="r", max_queued=2)
    after = sorted([k async for k in redis.scan_iter(match=f"{ledger.keys.prefix}*")])
    assert after == sorted([*before, ledger.keys.metrics])  # only the refusal is counted
    assert await redis.hgetall(ledger.keys.metrics) == {"refused_length": "1"}
    assert (await ledger.stats()).waiting == 1
    # A job already queued under its key is answered even so: nothing new is stored.
    await ledger.enqueue("k1", "t", "{}", dedup_key="key")
    dup = await ledger.enqueue("k2", "t", "{}", dedup_key="key", max_queued=2)
    assert (dup.job_id, dup.duplicate) == ("k1", True)


async def test_a_refused_replacement_leaves_the_finished_job_alone(
    redis: Redis, settings: Settings
) -> None:
    # Kicking a finished id again replaces it, but only when the new job is taken.
    ledger = JobLedger(redis, replace(settings, user_max_pending=1))
    await ledger.enqueue("old", "t", "{}", user_id="u")
    (claimed,) = (await ledger.claim("w", 1)).jobs
    await ledger.finish([done("old", claimed.token)])
    await ledger.enqueue("busy", "t", "{}", user_id="u")
    with pytest.raises(UserQuotaError):
        await ledger.enqueue("old", "t", "{}", user_id="u", replace_finished=True,
                             user_quota=1)  # fmt: skip
    assert await state_of(ledger, "old") is JobState.COMPLETED
    assert await redis.zscore(ledger.keys.completed, "old") is not None


async def test_past_the_sweep_s_room_a_claim_still_takes_no_late_job(
    redis: Redis, settings: Settings
) -> None:
    # The sweep at a claim's start expires at most 1000 jobs; a late job beyond those is
    # expired when the claim comes to it, and the claim asks to be called again.
    ledger = JobLedger(redis, settings)
    await asyncio.gather(*(
        ledger.enqueue(f"late{i}", "t", "{}", user_id=f"u{i}", start_deadline_ms=3000)
        for i in range(1003)
    ))  # fmt: skip
    await ledger.enqueue("z-fine", "t", "{}", user_id="z")
    deadlines = await redis.zrange(ledger.keys.deadlines, 0, -1, withscores=True)
    latest = max(int(entry[1]) for entry in deadlines)
    await until_server_time(redis, latest)
    first = await ledger.claim("w", 1)
    assert (first.status, first.jobs) == ("more", [])
    second = await ledger.claim("w", 1)
    assert [j.job_id for j in second.jobs] == ["z-fine"]
    assert (await ledger.stats()).expired == 1003


async def test_the_seed_s_helper_de_duplicates_and_takes_the_tier_s_deadline(
    redis: Redis, settings: Settings
) -> None:
    broker = build_broker(replace(settings, start_deadline_s="high=0,normal=0,low=600"))
    await broker.startup()
    try:
        aria, standing = CharacterRef(id="aria", name="Aria"), PoseRef(id="stand", name="Stand")
        first = await add_image_generation_job(broker, aria, standing, "u", "low")
        assert await add_image_generation_job(broker, aria, standing, "u", "low") == first
        # Another user, another pose, or asking for a new job: a job of its own.
        assert await add_image_generation_job(broker, aria, standing, "v", "low") != first
        other_pose = PoseRef(id="sit", name="Sit")
        assert await add_image_generation_job(broker, aria, other_pose, "u", "low") != first
        forced = await add_image_generation_job(
            broker, aria, standing, "u", "low", deduplicate=False, start_deadline_s=0
        )
        assert forced != first
        low = await broker.ledger.get_job(first)
        assert low.start_by is not None
        assert low.start_by - low.created_at == 600_000
        assert (await broker.ledger.get_job(forced)).start_by is None
        normal = await add_image_generation_job(broker, aria, PoseRef(id="x", name="X"), "u")
        assert (await broker.ledger.get_job(normal)).start_by is None
        assert (await broker.ledger.stats()).waiting == 5
    finally:
        await broker.shutdown()


async def test_a_dead_letter_sent_back_is_its_key_s_job_again(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, settings)
    await ledger.enqueue("d1", "t", "{}", dedup_key="k", max_attempts=1)
    (claimed,) = (await ledger.claim("w", 1)).jobs
    await ledger.finish([FinishOp("d1", claimed.token, "failed", "", "boom", "")])
    assert await redis.hget(ledger.keys.dedup, "k") is None
    await ledger.retry_failed("d1")
    again = await ledger.enqueue("d2", "t", "{}", dedup_key="k")
    assert (again.job_id, again.duplicate) == ("d1", True)
