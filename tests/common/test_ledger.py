"""The job ledger's scripts on a real Redis: every transition, count and refusal."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import JobState, Priority
from imagequeue_common.errors import (
    DuplicateJobError,
    InvalidJobError,
    JobNotFoundError,
    JobStateError,
    UserQuotaError,
)
from imagequeue_common.queue.jobs import RunStatus
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.settings import Settings, replace
from tests.support.procs import server_ms, stream_events, wait_until


@pytest.fixture
def ledger(redis: Redis, settings: Settings) -> JobLedger:
    return JobLedger(redis, settings)


async def add(
    ledger: JobLedger, job_id: str, priority: Priority = Priority.NORMAL, **kw: object
) -> None:
    await ledger.enqueue(job_id, "test.task", '{"x":1}', priority=priority, **kw)  # type: ignore[arg-type]


async def test_enqueue_answers_the_new_job_s_place_in_claim_order(ledger: JobLedger) -> None:
    for i in range(3):
        await add(ledger, f"n{i}")
    high = await ledger.enqueue("h", "test.task", "{}", priority=Priority.HIGH)
    low = await ledger.enqueue("l", "test.task", "{}", priority=Priority.LOW)
    later = await ledger.enqueue("d", "test.task", "{}", delay_ms=60_000)
    assert (high.job_id, high.state, high.position) == ("h", JobState.WAITING, 0)
    assert (low.state, low.position) == (JobState.WAITING, 4)  # behind the high and 3 normal
    assert (later.state, later.position) == (JobState.DELAYED, None)
    assert await ledger.position("l") == low.position


async def test_concurrent_enqueues_go_together_but_answer_alone(
    ledger: JobLedger, redis: Redis
) -> None:
    await add(ledger, "taken")
    await redis.script_flush()  # the server lost its scripts (as after a restart)
    ids = [f"j{i}" for i in range(40)] + ["taken"]
    results = await asyncio.gather(*(ledger.enqueue(i, "t", "{}") for i in ids),
                                   return_exceptions=True)  # fmt: skip
    assert isinstance(results[-1], DuplicateJobError)  # its own error, the others unharmed
    assert [r.position for r in results[:-1]] == list(range(1, 41))  # type: ignore[union-attr]
    assert (await ledger.stats()).waiting == 41


async def test_enqueue_then_claim_leases_the_job(ledger: JobLedger) -> None:
    await add(ledger, "a", user_id="u1")
    result = await ledger.claim("w1", 5)
    assert result.status == "ok"
    [job] = result.jobs
    assert (job.job_id, job.payload, job.attempts, job.max_attempts) == ("a", '{"x":1}', 1, 4)
    stored = await ledger.get_job("a")
    assert stored.state is JobState.ACTIVE
    assert stored.user == "u1"
    assert stored.worker == "w1"


async def test_high_priority_behind_ten_thousand_low_is_claimed_next(
    ledger: JobLedger, redis: Redis
) -> None:
    k = ledger.keys
    await asyncio.gather(*(add(ledger, f"low-{i}", Priority.LOW) for i in range(10_000)))
    await add(ledger, "normal-1", Priority.NORMAL)
    await add(ledger, "high-1", Priority.HIGH)
    assert await redis.zcard(k.waiting) == 10_002
    first = await ledger.claim("w", 1)
    second = await ledger.claim("w", 1)
    third = await ledger.claim("w", 1)
    assert [first.jobs[0].job_id, second.jobs[0].job_id] == ["high-1", "normal-1"]
    assert third.jobs[0].job_id.startswith("low-")


async def test_fifo_inside_one_priority(ledger: JobLedger) -> None:
    for i in range(20):
        await add(ledger, f"j{i:02}", Priority.NORMAL)
    claimed = (await ledger.claim("w", 20)).jobs
    assert [j.job_id for j in claimed] == [f"j{i:02}" for i in range(20)]


async def test_claim_takes_no_more_than_wanted(ledger: JobLedger) -> None:
    for i in range(10):
        await add(ledger, f"j{i}")
    assert len((await ledger.claim("w", 3)).jobs) == 3
    stats = await ledger.stats()
    assert (stats.waiting, stats.active) == (7, 3)


async def test_empty_queue_answers_empty_and_the_next_due_time(ledger: JobLedger) -> None:
    assert (await ledger.claim("w", 1)).status == "empty"
    assert (await ledger.claim("w", 1)).wait_ms == -1
    await add(ledger, "later", delay_ms=5000)
    result = await ledger.claim("w", 1)
    assert result.status == "empty"
    assert 4000 < result.wait_ms <= 5000


async def test_delayed_job_is_promoted_when_due(ledger: JobLedger) -> None:
    await add(ledger, "d", delay_ms=150)
    assert (await ledger.get_job("d")).state is JobState.DELAYED
    result = await ledger.claim("w", 1)
    assert result.status == "empty"
    await asyncio.sleep(result.wait_ms / 1000)  # the engine's own answer, not a guess
    claimed = await ledger.claim("w", 1)
    assert [j.job_id for j in claimed.jobs] == ["d"]


async def test_duplicate_id_changes_nothing(ledger: JobLedger) -> None:
    await add(ledger, "dup")
    before = await ledger.get_job("dup")
    with pytest.raises(DuplicateJobError):
        await ledger.enqueue("dup", "other.task", "{}", priority=Priority.HIGH)
    assert await ledger.get_job("dup") == before
    assert (await ledger.stats()).waiting == 1


async def test_negative_delay_is_refused_and_writes_nothing(
    ledger: JobLedger, redis: Redis
) -> None:
    with pytest.raises(InvalidJobError, match="negative"):
        await add(ledger, "neg", delay_ms=-1)
    assert await redis.exists(ledger.keys.job("neg")) == 0
    assert (await ledger.stats()).total == 0


async def test_finish_completed_stores_result_and_counts(ledger: JobLedger) -> None:
    await add(ledger, "a")
    job = (await ledger.claim("w", 1)).jobs[0]
    assert await ledger.finish([FinishOp("a", job.token, "completed", '{"ok":true}')]) == [True]
    stored = await ledger.get_job("a")
    assert (stored.state, stored.result, stored.progress) == (
        JobState.COMPLETED,
        '{"ok":true}',
        100,
    )
    stats = await ledger.stats()
    assert (stats.completed, stats.active, stats.total) == (1, 0, 1)


async def test_finish_with_a_stale_token_changes_nothing(ledger: JobLedger) -> None:
    await add(ledger, "a")
    job = (await ledger.claim("w", 1)).jobs[0]
    stale = str(int(job.token) + 1)
    assert await ledger.finish([FinishOp("a", stale, "completed", "1")]) == [False]
    assert (await ledger.get_job("a")).state is JobState.ACTIVE


async def test_retry_goes_to_delayed_with_due_time_and_error(ledger: JobLedger) -> None:
    await add(ledger, "r")
    job = (await ledger.claim("w", 1)).jobs[0]
    await ledger.finish([FinishOp("r", job.token, "retry", "5000", "TimeoutError: slow")])
    stored = await ledger.get_job("r")
    assert stored.state is JobState.DELAYED
    assert stored.error == "TimeoutError: slow"
    assert stored.due_at is not None
    assert stored.started_at is not None
    assert 4990 <= stored.due_at - stored.started_at <= 5100


async def test_failed_is_the_dead_letter_queue_and_keeps_everything(ledger: JobLedger) -> None:
    await add(ledger, "f", user_id="u9")
    job = (await ledger.claim("w", 1)).jobs[0]
    await ledger.finish([FinishOp("f", job.token, "failed", "", "HTTP 400: bad prompt")])
    stored = await ledger.get_job("f")
    assert (stored.state, stored.error, stored.attempts) == (
        JobState.FAILED,
        "HTTP 400: bad prompt",
        1,
    )
    assert stored.payload == '{"x":1}'
    assert (await ledger.stats()).failed == 1


async def test_retry_failed_by_id_resets_attempts(ledger: JobLedger) -> None:
    await add(ledger, "f")
    job = (await ledger.claim("w", 1)).jobs[0]
    await ledger.finish([FinishOp("f", job.token, "failed", "", "x")])
    await ledger.retry_failed("f")
    stored = await ledger.get_job("f")
    assert (stored.state, stored.attempts) == (JobState.WAITING, 0)
    again = (await ledger.claim("w", 1)).jobs[0]
    assert (again.job_id, again.attempts) == ("f", 1)


async def test_retry_all_failed(ledger: JobLedger) -> None:
    for i in range(7):
        await add(ledger, f"f{i}")
    for job in (await ledger.claim("w", 7)).jobs:
        await ledger.finish([FinishOp(job.job_id, job.token, "failed", "", "x")])
    assert await ledger.retry_all_failed() == 7
    stats = await ledger.stats()
    assert (stats.failed, stats.waiting) == (0, 7)


async def test_retry_refuses_unknown_and_not_failed_jobs(ledger: JobLedger) -> None:
    with pytest.raises(JobNotFoundError):
        await ledger.retry_failed("nope")
    await add(ledger, "w1")
    with pytest.raises(JobStateError, match="waiting"):
        await ledger.retry_failed("w1")


async def test_cancel_waiting_and_delayed_now_active_at_next_progress(ledger: JobLedger) -> None:
    await add(ledger, "run")
    await add(ledger, "wait")
    await add(ledger, "later", delay_ms=60_000)
    job = (await ledger.claim("w", 1)).jobs[0]
    assert await ledger.cancel("wait") == "cancelled"
    assert await ledger.cancel("later") == "cancelled"
    assert await ledger.cancel("run") == "requested"
    # the worker learns it here
    assert await ledger.progress("run", job.token, 50) is RunStatus.CANCEL_REQUESTED
    await ledger.finish([FinishOp("run", job.token, "cancelled")])
    stats = await ledger.stats()
    assert (stats.cancelled, stats.waiting, stats.delayed, stats.active) == (3, 0, 0, 0)


async def test_cancel_refuses_unknown_and_finished_jobs(ledger: JobLedger) -> None:
    with pytest.raises(JobNotFoundError):
        await ledger.cancel("nope")
    await add(ledger, "a")
    job = (await ledger.claim("w", 1)).jobs[0]
    await ledger.finish([FinishOp("a", job.token, "completed", "1")])
    with pytest.raises(JobStateError, match="completed"):
        await ledger.cancel("a")


async def test_progress_is_stored_and_published(ledger: JobLedger, redis: Redis) -> None:
    await add(ledger, "p")
    job = (await ledger.claim("w", 1)).jobs[0]
    assert await ledger.progress("p", job.token, 10, "started") is RunStatus.GO_ON
    assert await ledger.progress("p", job.token, 80, "image received") is RunStatus.GO_ON
    stored = await ledger.get_job("p")
    assert (stored.progress, stored.progress_msg) == (80, "image received")
    events = await stream_events(redis, ledger.keys.events)
    progress = [e for _, e in events if e["event"] == "progress"]
    assert [(e["progress"], e["msg"]) for e in progress] == [
        ("10", "started"),
        ("80", "image received"),
    ]
    assert [e["event"] for _, e in events][:2] == ["waiting", "active"]


async def test_progress_out_of_range_is_refused(ledger: JobLedger) -> None:
    await add(ledger, "p")
    job = (await ledger.claim("w", 1)).jobs[0]
    with pytest.raises(InvalidJobError):
        await ledger.progress("p", job.token, 101)
    assert (await ledger.get_job("p")).progress == 0


async def test_events_stream_stays_capped(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, replace(settings, events_maxlen=100))
    for i in range(300):
        await add(ledger, f"e{i}")
    # MAXLEN ~ trims whole macro nodes (100 entries by default), so allow one node of slack.
    assert await redis.xlen(ledger.keys.events) <= 200


async def test_expired_lease_returns_the_job_to_its_place(
    ledger: JobLedger, settings: Settings
) -> None:
    ledger = JobLedger(ledger.client, replace(settings, lease_ms=100))
    await add(ledger, "first")
    await add(ledger, "second")
    dead = (await ledger.claim("dead-worker", 1)).jobs[0]
    assert dead.job_id == "first"

    async def recovered() -> bool:
        requeued, _ = await ledger.recover_stalled()
        return requeued == ["first"]

    await wait_until(recovered, 5, "the expired lease to be recovered")
    stored = await ledger.get_job("first")
    assert (stored.state, stored.stalls, stored.attempts) == (JobState.WAITING, 1, 0)
    assert (await ledger.claim("w", 1)).jobs[0].job_id == "first"  # its old place, ahead
    assert (await ledger.finish([FinishOp("first", dead.token, "completed", "1")])) == [False]
    assert (await ledger.metrics()).stalled == 1


async def test_a_job_stalling_past_the_limit_is_dead_lettered(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, replace(settings, lease_ms=50, stall_limit=1))
    await add(ledger, "s")
    for expected_state in (JobState.WAITING, JobState.FAILED):
        await ledger.claim("dead", 1)

        async def expired() -> bool:
            requeued, dead = await ledger.recover_stalled()
            return bool(requeued or dead)

        await wait_until(expired, 5, "the lease to expire")
        assert (await ledger.get_job("s")).state is expected_state
    assert "stalled 2 times" in ((await ledger.get_job("s")).error or "")


async def test_extend_renews_only_held_leases(ledger: JobLedger, redis: Redis) -> None:
    await add(ledger, "a")
    job = (await ledger.claim("w", 1)).jobs[0]
    before = await redis.zscore(ledger.keys.active, "a")
    lost, cancel = await ledger.extend("w", "{}", [("a", job.token), ("gone", "1")])
    assert (lost, cancel) == (["gone"], [])
    after = await redis.zscore(ledger.keys.active, "a")
    assert after is not None
    assert before is not None
    assert after >= before
    assert await redis.zscore(ledger.keys.workers, "w") is not None


async def test_release_gives_jobs_back_without_using_an_attempt(ledger: JobLedger) -> None:
    await add(ledger, "a")
    job = (await ledger.claim("w", 1)).jobs[0]
    assert await ledger.release([("a", job.token)]) == 1
    stored = await ledger.get_job("a")
    assert (stored.state, stored.attempts, stored.stalls) == (JobState.WAITING, 0, 0)


async def test_hold_stops_all_claims_until_it_ends(ledger: JobLedger) -> None:
    await add(ledger, "a")
    await ledger.hold(300)
    result = await ledger.claim("w", 1)
    assert result.status == "limited"
    assert 0 < result.wait_ms <= 300
    await asyncio.sleep(result.wait_ms / 1000)
    assert (await ledger.claim("w", 1)).status == "ok"


async def test_pause_and_resume(ledger: JobLedger) -> None:
    await add(ledger, "a")
    await ledger.pause()
    assert (await ledger.claim("w", 1)).status == "paused"
    assert (await ledger.stats()).paused
    await ledger.resume()
    assert (await ledger.claim("w", 1)).status == "ok"


async def test_stats_total_is_the_sum_of_the_seed_states(ledger: JobLedger) -> None:
    for i in range(6):
        await add(ledger, f"j{i}")
    await add(ledger, "d", delay_ms=60_000)
    jobs = (await ledger.claim("w", 3)).jobs
    await ledger.finish([FinishOp(jobs[0].job_id, jobs[0].token, "completed", "1")])
    await ledger.finish([FinishOp(jobs[1].job_id, jobs[1].token, "failed", "", "x")])
    await ledger.cancel("j5")
    stats = await ledger.stats()
    assert (stats.waiting, stats.active, stats.completed, stats.failed, stats.delayed) == (
        2,
        1,
        1,
        1,
        1,
    )
    assert (stats.total, stats.cancelled) == (6, 1)


async def test_only_rate_limited_jobs_wait_for_the_limit_the_others_pass_them(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, replace(settings, rate_limit_max=2, rate_limit_duration_ms=60_000))
    for i in range(4):  # in claim order: limited, free, limited, limited, free, ...
        await add(ledger, f"lim{i}")
        await add(ledger, f"free{i}", rate_limited=False)
    first = await ledger.claim("w", 5)
    assert [j.job_id for j in first.jobs] == ["lim0", "free0", "lim1", "free1", "free2"]
    second = await ledger.claim("w", 5)  # the limit is used up: only the free one is left
    assert [j.job_id for j in second.jobs] == ["free3"]
    third = await ledger.claim("w", 5)
    assert (third.status, third.jobs) == ("limited", [])
    assert 59_000 < third.wait_ms <= 60_000
    # The limited jobs kept their places, in order, for when the window slides.
    assert await ledger.position("lim2") == 0
    assert await ledger.position("lim3") == 1
    assert (await ledger.metrics()).rate_limited == 1


async def test_upstream_permits_follow_the_limit_with_its_guard(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(
        redis,
        replace(settings, rate_limit_max=3, rate_limit_duration_ms=400, rate_limit_guard_ms=100),
    )
    granted = [await ledger.upstream_permit(f"j{i}", "1") for i in range(3)]
    assert granted == [0, 0, 0]
    wait = await ledger.upstream_permit("j3", "1")
    assert 400 < wait <= 500  # window + guard, less the few ms already gone
    assert (await ledger.metrics()).upstream_waits == 1

    async def granted_again() -> bool:
        return await ledger.upstream_permit("j3", "1") == 0

    await wait_until(granted_again, 2, "the window to slide")


async def test_a_late_callers_permit_holds_back_the_next_ones(
    redis: Redis, settings: Settings
) -> None:
    # A request permitted to a lagging worker may arrive up to its lag late: the permits
    # after it, whoever asks, wait until it is surely a window behind them. Its own wait is
    # an on-time one's: the permits before it hold their own slack.
    ledger = JobLedger(
        redis,
        replace(settings, rate_limit_max=1, rate_limit_duration_ms=300, rate_limit_guard_ms=0),
    )
    assert await ledger.upstream_permit("late", "1", local_lag_ms=200) == 0
    after_late = await ledger.upstream_permit("prompt", "1")
    assert 480 <= after_late <= 500  # 300 ms window + the late one's 200 ms
    await redis.delete(ledger.keys.upstream)  # the other order, from a clean window
    assert await ledger.upstream_permit("prompt", "1") == 0
    late_after_prompt = await ledger.upstream_permit("late", "1", local_lag_ms=200)
    assert 280 <= late_after_prompt <= 300  # only the window: the prompt one has no slack
    with pytest.raises(InvalidJobError, match="local lag must not be negative"):
        await ledger.upstream_permit("x", "1", local_lag_ms=-1)


async def test_upstream_permits_stop_during_a_hold(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, replace(settings, rate_limit_max=0))
    assert await ledger.upstream_permit("a", "1") == 0  # no limit: always, but for a hold
    await ledger.hold(300)
    assert 0 < await ledger.upstream_permit("a", "1") <= 300


async def test_user_quota_counts_unfinished_jobs(ledger: JobLedger) -> None:
    for i in range(3):
        await add(ledger, f"q{i}", user_id="flood", user_quota=3)
    with pytest.raises(UserQuotaError, match="already has 3 unfinished jobs"):
        await add(ledger, "q3", user_id="flood", user_quota=3)
    with pytest.raises(JobNotFoundError):
        await ledger.get_job("q3")  # nothing written
    await add(ledger, "other", user_id="calm", user_quota=3)  # users are independent
    await ledger.cancel("q0")  # waiting -> cancelled frees one
    await add(ledger, "q4", user_id="flood", user_quota=3)
    jobs = (await ledger.claim("w", 10)).jobs
    assert await ledger.user_pending("flood") == 3  # active still counts
    done = [FinishOp(j.job_id, j.token, "completed", "1") for j in jobs if j.job_id == "q1"]
    fail = [FinishOp(j.job_id, j.token, "failed", "", "boom") for j in jobs if j.job_id == "q2"]
    assert await ledger.finish(done + fail) == [True, True]
    assert await ledger.user_pending("flood") == 1
    await ledger.retry_failed("q2")  # back from the dead letters: counts again
    assert await ledger.user_pending("flood") == 2
    assert await ledger.user_pending("calm") == 1


async def test_position_is_the_claim_order(ledger: JobLedger) -> None:
    await add(ledger, "low", Priority.LOW)
    await add(ledger, "n1")
    await add(ledger, "n2")
    await add(ledger, "high", Priority.HIGH)
    assert [await ledger.position(i) for i in ("high", "n1", "n2", "low")] == [0, 1, 2, 3]
    await ledger.claim("w", 1)
    assert await ledger.position("high") is None  # active: not waiting any more
    assert await ledger.position("low") == 2


async def test_throughput_and_live_workers(ledger: JobLedger) -> None:
    assert (await ledger.throughput()).completed == 0
    for i in range(4):
        await add(ledger, f"t{i}")
    jobs = (await ledger.claim("w1", 4)).jobs
    await ledger.finish([FinishOp(j.job_id, j.token, "completed", "1") for j in jobs])
    recent = await ledger.throughput()
    assert (recent.completed, recent.window_s) == (4, 60)
    assert recent.per_minute == 4
    assert recent.mean_run_s is not None
    assert recent.mean_run_s < 5
    await ledger.extend("w1", '{"host": "h", "pid": 7, "concurrency": 5, "running": 2}', [])
    [worker] = await ledger.live_workers()
    assert (worker.id, worker.host, worker.pid, worker.concurrency, worker.running) == (
        "w1", "h", 7, 5, 2)  # fmt: skip


async def test_a_worker_silent_for_a_lease_is_not_live(ledger: JobLedger) -> None:
    info = '{"host": "h", "pid": 7, "concurrency": 5, "running": 0}'
    await ledger.extend("quiet", info, [])
    await ledger.extend("busy", info, [])
    now = await server_ms(ledger.client)
    # "quiet" last beat one lease and a millisecond ago: it missed three beats.
    await ledger.client.zadd(ledger.keys.workers, {"quiet": now - ledger.settings.lease_ms - 1})
    assert [w.id for w in await ledger.live_workers()] == ["busy"]


async def test_a_deregistered_worker_is_gone_at_once(ledger: JobLedger) -> None:
    info = '{"host": "h", "pid": 7, "concurrency": 5, "running": 0}'
    await ledger.extend("w1", info, [])
    await ledger.extend("w2", info, [])
    await ledger.deregister("w1")
    assert [w.id for w in await ledger.live_workers()] == ["w2"]
    assert not await ledger.client.exists(ledger.keys.worker("w1"))


async def test_an_enqueue_sent_again_after_a_lost_reply_gets_the_first_answer(
    ledger: JobLedger,
) -> None:
    # A connection that dies after the write makes the client send the call again (see
    # redis_conn): the same call (its nonce) is answered as the first was, not "exists";
    # another call for the same id still is a duplicate.
    k = ledger.keys
    keys = [k.waiting, k.delayed, k.events, k.marker, k.meta, k.users, k.active]
    args = [k.prefix, "once", "t", "{}", "normal", "u", 0, 4, 1000, 0, "", "nonce-1", "0", "1",
            "s", 0, "", 0]  # fmt: skip
    first = await ledger.scripts.call("enqueue", keys, args)
    again = await ledger.scripts.call("enqueue", keys, args)
    assert first == again == ["waiting", 0, 0, "once", 0]
    other = [*args[:11], "nonce-2", *args[12:]]
    assert await ledger.scripts.call("enqueue", keys, other) == 0
    assert (await ledger.stats()).waiting == 1
