"""The dashboard's reads and admin operations on a real Redis: lists, search and its indexes,
promote, remove, timelines, per-minute counts, rate usage, Redis health, dead-letter tracebacks."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import CharacterRef, JobState, PoseRef, Priority
from imagequeue_common.embedded_redis import EmbeddedRedis, answers, find_redis_server, free_port
from imagequeue_common.errors import InvalidJobError, JobNotFoundError, JobStateError
from imagequeue_common.generation import add_image_generation_job
from imagequeue_common.queue.admin import QueueAdmin
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.queue.retry import TRACEBACK_MARK, RetryPolicy, describe
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings, replace
from tests.common.test_redis_compat import BUNDLED
from tests.support.procs import server_ms, stream_events, wait_until


@pytest.fixture
def ledger(redis: Redis, settings: Settings) -> JobLedger:
    return JobLedger(redis, settings)


@pytest.fixture
def admin(ledger: JobLedger) -> QueueAdmin:
    return QueueAdmin(ledger)


async def add(ledger: JobLedger, job_id: str, **kw: Any) -> None:
    await ledger.enqueue(job_id, "test.task", '{"x":1}', **kw)


async def next_ms(redis: Redis) -> None:
    """Wait until the server's clock moved on a millisecond (scores by time must differ)."""
    start = await server_ms(redis)

    async def moved() -> bool:
        return await server_ms(redis) > start

    await wait_until(moved, 2, "the server clock to tick", poll_s=0.001)


async def finish_one(
    ledger: JobLedger, job_id: str, kind: str, error: str = "", detail: str = ""
) -> None:
    """Claim the next job, which must be ``job_id``, and end its run with ``kind``."""
    [job] = (await ledger.claim("w", 1)).jobs
    assert job.job_id == job_id
    op = FinishOp(job_id, job.token, kind, "1", error, detail)  # type: ignore[arg-type]
    assert await ledger.finish([op]) == [True]


async def queue_keys(redis: Redis, queue: str, part: str) -> list[str]:
    return sorted([k async for k in redis.scan_iter(match=f"*{{{queue}}}:{part}*", count=1000)])


def ids(jobs: list[Any]) -> list[str]:
    return [j.id for j in jobs]


# --- list_jobs ---------------------------------------------------------------------------


async def test_waiting_lists_in_claim_order_and_pages(admin: QueueAdmin, ledger: JobLedger) -> None:
    await add(ledger, "low", priority=Priority.LOW)
    for name in ("n1", "n2", "n3"):
        await add(ledger, name)
    await add(ledger, "high", priority=Priority.HIGH)
    order = ["high", "n1", "n2", "n3", "low"]
    assert ids(await admin.list_jobs(JobState.WAITING)) == order
    assert ids(await admin.list_jobs(JobState.WAITING, offset=1, limit=2)) == ["n1", "n2"]
    assert ids(await admin.list_jobs(JobState.WAITING, offset=4, limit=10)) == ["low"]
    assert await admin.list_jobs(JobState.WAITING, offset=5) == []
    [first] = await admin.list_jobs(JobState.WAITING, limit=1)
    assert first == await ledger.get_job("high")  # the whole job, payload included
    assert await admin.count(JobState.WAITING) == 5
    claimed = (await ledger.claim("w", 5)).jobs
    assert [j.job_id for j in claimed] == order  # the list was the claim order


async def test_active_lists_by_lease_deadline(
    admin: QueueAdmin, ledger: JobLedger, settings: Settings
) -> None:
    await add(ledger, "a")
    await add(ledger, "b")
    token_a = (await ledger.claim("w", 1)).jobs[0].token  # lease 2 s
    await JobLedger(ledger.client, replace(settings, lease_ms=10_000)).claim("w", 1)  # b: 10 s
    assert ids(await admin.list_jobs(JobState.ACTIVE)) == ["a", "b"]
    await JobLedger(ledger.client, replace(settings, lease_ms=60_000)).extend(
        "w", "{}", [("a", token_a)]
    )
    assert ids(await admin.list_jobs(JobState.ACTIVE)) == ["b", "a"]


async def test_delayed_lists_soonest_due_first(admin: QueueAdmin, ledger: JobLedger) -> None:
    for name, delay in (("d30", 30_000), ("d10", 10_000), ("d20", 20_000)):
        await add(ledger, name, delay_ms=delay)
    assert ids(await admin.list_jobs(JobState.DELAYED)) == ["d10", "d20", "d30"]
    assert ids(await admin.list_jobs(JobState.DELAYED, offset=2)) == ["d30"]


async def test_finished_states_list_newest_first(
    admin: QueueAdmin, ledger: JobLedger, redis: Redis
) -> None:
    for i in range(3):
        for state, kind in (("c", "completed"), ("f", "failed")):
            await add(ledger, f"{state}{i}")
            await finish_one(ledger, f"{state}{i}", kind, "err")
        await add(ledger, f"x{i}")
        await ledger.cancel(f"x{i}")
        await next_ms(redis)
    assert ids(await admin.list_jobs(JobState.COMPLETED)) == ["c2", "c1", "c0"]
    assert ids(await admin.list_jobs(JobState.FAILED, limit=2)) == ["f2", "f1"]
    assert ids(await admin.list_jobs(JobState.FAILED, offset=2, limit=2)) == ["f0"]
    assert ids(await admin.list_jobs(JobState.CANCELLED)) == ["x2", "x1", "x0"]
    assert [j.state for j in await admin.list_jobs(JobState.FAILED)] == [JobState.FAILED] * 3


@pytest.mark.parametrize(("offset", "limit"), [(-1, 20), (0, 0), (0, 1001)])
async def test_bad_pages_are_refused(admin: QueueAdmin, offset: int, limit: int) -> None:
    with pytest.raises(InvalidJobError):
        await admin.list_jobs(JobState.WAITING, offset=offset, limit=limit)


# --- search and its indexes ----------------------------------------------------------------


async def test_search_by_id_user_and_ref(
    admin: QueueAdmin, ledger: JobLedger, redis: Redis
) -> None:
    for job_id, user, ref in (("j1", "u1", "charA"), ("j2", "u1", "charB"), ("j3", "u2", "charA")):
        await add(ledger, job_id, user_id=user, ref=ref)
        await next_ms(redis)
    assert ids(await admin.search("j2")) == ["j2"]
    assert ids(await admin.search(" u1 ")) == ["j2", "j1"]  # newest first
    assert ids(await admin.search("charA")) == ["j3", "j1"]
    assert ids(await admin.search("charA", limit=1)) == ["j3"]
    assert await admin.search("nobody") == []
    assert await admin.search("") == []
    assert (await admin.search("j3"))[0].ref == "charA"


async def test_search_puts_the_id_first_and_dedupes(
    admin: QueueAdmin, ledger: JobLedger, redis: Redis
) -> None:
    await add(ledger, "older", user_id="sam")
    await next_ms(redis)
    await add(ledger, "sam", user_id="sam", ref="sam")  # its id, user and ref are all "sam"
    assert ids(await admin.search("sam")) == ["sam", "older"]


async def test_generation_jobs_carry_the_character_as_ref(
    broker: EngineBroker, redis: Redis, queue_name: str
) -> None:
    aria = CharacterRef(id="693db123", name="Aria Voss")
    job_id = await add_image_generation_job(broker, aria, PoseRef(id="p1", name="Standing"), "u7")
    admin = QueueAdmin(broker.ledger)
    job = await broker.ledger.get_job(job_id)
    assert (job.ref, job.user) == ("693db123", "u7")
    assert ids(await admin.search("693db123")) == [job_id]
    assert ids(await admin.search("u7")) == [job_id]
    assert await queue_keys(redis, queue_name, "by") == [
        f"iq:{{{queue_name}}}:byref:693db123",
        f"iq:{{{queue_name}}}:byuser:u7",
    ]


async def test_jobs_without_user_or_ref_write_no_index(
    ledger: JobLedger, redis: Redis, queue_name: str
) -> None:
    await add(ledger, "plain")
    assert await queue_keys(redis, queue_name, "by") == []
    assert (await ledger.get_job("plain")).ref == ""


async def test_clean_takes_the_jobs_out_of_the_indexes(
    admin: QueueAdmin, ledger: JobLedger, redis: Redis, queue_name: str
) -> None:
    for i in range(4):
        await add(ledger, f"c{i}", user_id="u1", ref=f"ch{i % 2}")
    await add(ledger, "kept", user_id="u1", ref="ch0")
    for i in range(4):
        await finish_one(ledger, f"c{i}", "completed" if i % 2 else "failed", "x")
    await ledger.clean(keep_completed_ms=0, keep_failed_ms=0)
    k = ledger.keys
    assert await redis.zrange(k.by_user("u1"), 0, -1) == ["kept"]
    assert await redis.zrange(k.by_ref("ch0"), 0, -1) == ["kept"]
    assert await queue_keys(redis, queue_name, "by") == sorted([k.by_ref("ch0"), k.by_user("u1")])
    assert ids(await admin.search("u1")) == ["kept"]


# --- promote -------------------------------------------------------------------------------


async def test_promote_sends_a_delayed_job_to_the_end_of_its_priority(
    admin: QueueAdmin, ledger: JobLedger, redis: Redis
) -> None:
    await add(ledger, "later", delay_ms=60_000)
    await add(ledger, "w1")
    await add(ledger, "w2")
    await add(ledger, "low", priority=Priority.LOW)
    await add(ledger, "high", priority=Priority.HIGH)
    await redis.delete(ledger.keys.marker)
    await admin.promote("later")
    assert await redis.llen(ledger.keys.marker) == 1  # a worker is woken
    job = await ledger.get_job("later")
    assert (job.state, job.due_at) == (JobState.WAITING, None)
    await add(ledger, "w3")
    assert ids(await admin.list_jobs(JobState.WAITING)) == [
        "high",
        "w1",
        "w2",
        "later",
        "w3",
        "low",
    ]
    stats = await ledger.stats()
    assert (stats.delayed, stats.waiting) == (0, 6)
    events = [e for _, e in await stream_events(redis, ledger.keys.events) if e["job"] == "later"]
    assert events[-1] == {"job": "later", "event": "waiting", "promoted": "1"}


async def test_promote_refuses_unknown_and_not_delayed_jobs(
    admin: QueueAdmin, ledger: JobLedger
) -> None:
    with pytest.raises(JobNotFoundError):
        await admin.promote("nope")
    await add(ledger, "w")
    before = await ledger.get_job("w")
    with pytest.raises(JobStateError, match="waiting"):
        await admin.promote("w")
    assert await ledger.get_job("w") == before
    await finish_one(ledger, "w", "completed")
    with pytest.raises(JobStateError, match="completed"):
        await admin.promote("w")
    assert (await ledger.stats()).completed == 1


# --- remove --------------------------------------------------------------------------------


async def test_remove_deletes_everything_of_an_unfinished_job(
    admin: QueueAdmin, ledger: JobLedger, redis: Redis, queue_name: str
) -> None:
    await add(ledger, "w", user_id="u1", ref="ch")
    await add(ledger, "d", user_id="u1", ref="ch", delay_ms=60_000)
    await add(ledger, "other", user_id="u1")
    assert await ledger.user_pending("u1") == 3
    await admin.remove("w")
    await admin.remove("d")
    assert await ledger.user_pending("u1") == 1
    for job_id in ("w", "d"):
        with pytest.raises(JobNotFoundError):
            await ledger.get_job(job_id)
        assert await redis.exists(ledger.keys.data(job_id)) == 0
    stats = await ledger.stats()
    assert (stats.waiting, stats.delayed) == (1, 0)
    assert await queue_keys(redis, queue_name, "by") == [ledger.keys.by_user("u1")]
    assert await redis.zrange(ledger.keys.by_user("u1"), 0, -1) == ["other"]
    removed = [
        e for _, e in await stream_events(redis, ledger.keys.events) if e["event"] == "removed"
    ]
    assert removed == [
        {"job": "w", "event": "removed", "state": "waiting"},
        {"job": "d", "event": "removed", "state": "delayed"},
    ]


async def test_remove_finished_jobs_leaves_the_user_count(
    admin: QueueAdmin, ledger: JobLedger, redis: Redis, queue_name: str
) -> None:
    for job_id, kind in (("c", "completed"), ("f", "failed")):
        await add(ledger, job_id, user_id="u1", ref="ch")
        await finish_one(ledger, job_id, kind, "x")
    await add(ledger, "x", user_id="u1", ref="ch")
    await ledger.cancel("x")
    await add(ledger, "open", user_id="u1")
    for job_id in ("c", "f", "x"):
        await admin.remove(job_id)
    assert await ledger.user_pending("u1") == 1
    stats = await ledger.stats()
    assert (stats.completed, stats.failed, stats.cancelled, stats.waiting) == (0, 0, 0, 1)
    assert await queue_keys(redis, queue_name, "job:") == [ledger.keys.job("open"),
                                                          ledger.keys.data("open")]  # fmt: skip
    assert await queue_keys(redis, queue_name, "byref") == []


async def test_remove_refuses_active_and_unknown_jobs(admin: QueueAdmin, ledger: JobLedger) -> None:
    with pytest.raises(JobNotFoundError):
        await admin.remove("nope")
    await add(ledger, "run", user_id="u1", ref="ch")
    await ledger.claim("w", 1)
    before = await ledger.get_job("run")
    with pytest.raises(JobStateError, match="active"):
        await admin.remove("run")
    assert await ledger.get_job("run") == before
    assert await ledger.user_pending("u1") == 1
    assert ids(await admin.search("ch")) == ["run"]


# --- timeline ------------------------------------------------------------------------------


async def test_timeline_is_the_jobs_events_oldest_first(
    admin: QueueAdmin, ledger: JobLedger
) -> None:
    await add(ledger, "t", user_id="u1")
    await add(ledger, "noise")
    first = (await ledger.claim("w", 1)).jobs[0]
    assert first.job_id == "t"
    await ledger.progress("t", first.token, 50, "half")
    await ledger.finish([FinishOp("t", first.token, "retry", "60000", "TimeoutError: slow")])
    await admin.promote("t")
    await ledger.cancel("noise")
    again = (await ledger.claim("w", 1)).jobs[0]
    await ledger.finish([FinishOp("t", again.token, "completed", "1")])
    timeline = await admin.timeline("t")
    assert [e.event for e in timeline] == [
        "waiting", "active", "progress", "delayed", "waiting", "active", "completed"]  # fmt: skip
    assert timeline[0].fields == {"user": "u1"}
    assert [e.fields.get("attempt") for e in timeline if e.event == "active"] == ["1", "2"]
    assert timeline[2].fields == {"progress": "50", "msg": "half"}
    assert timeline[3].fields["error"] == "TimeoutError: slow"
    assert timeline[4].fields == {"promoted": "1"}
    assert [e.at_ms for e in timeline] == sorted(e.at_ms for e in timeline)
    job = await ledger.get_job("t")
    assert timeline[0].at_ms >= job.created_at - 5
    assert all(e.entry_id.startswith(f"{e.at_ms}-") for e in timeline)


async def test_timeline_reads_past_one_chunk_and_outlives_the_job(
    admin: QueueAdmin, ledger: JobLedger
) -> None:
    await add(ledger, "t")
    job = (await ledger.claim("w", 1)).jobs[0]
    for i in range(1500):  # more than one XRANGE chunk of events
        await ledger.progress("t", job.token, i % 100)
    await ledger.finish([FinishOp("t", job.token, "completed", "1")])
    await admin.remove("t")
    timeline = await admin.timeline("t")
    assert len(timeline) == 1 + 1 + 1500 + 1 + 1
    assert (timeline[0].event, timeline[-2].event, timeline[-1].event) == (
        "waiting", "completed", "removed")  # fmt: skip
    with pytest.raises(JobNotFoundError):
        await admin.timeline("never-was")


# --- per-minute throughput -----------------------------------------------------------------


async def test_per_minute_counts_completions_and_dead_letters(
    admin: QueueAdmin, ledger: JobLedger, settings: Settings
) -> None:
    for i in range(5):
        await add(ledger, f"j{i}")
    jobs = (await ledger.claim("w", 5)).jobs
    ops = [FinishOp(j.job_id, j.token, "completed", "1") for j in jobs[:3]]
    ops.append(FinishOp(jobs[3].job_id, jobs[3].token, "failed", "", "HTTP 400"))
    ops.append(FinishOp(jobs[4].job_id, jobs[4].token, "retry", "60000", "slow"))  # not a failure
    await ledger.finish(ops)
    # A job stalling past the limit is a dead letter too.
    stalling = JobLedger(ledger.client, replace(settings, lease_ms=50, stall_limit=0))
    await add(stalling, "s")
    await stalling.claim("dead", 1)

    async def dead_lettered() -> bool:
        return bool((await stalling.recover_stalled())[1])

    await wait_until(dead_lettered, 5, "the stalled job to be dead-lettered")
    minutes = await admin.throughput_by_minute()
    assert len(minutes) == 60
    starts = [m.minute_start_ms for m in minutes]
    assert starts == list(range(starts[0], starts[0] + 60 * 60_000, 60_000))
    now = await server_ms(ledger.client)
    assert starts[-1] == now - now % 60_000
    assert (sum(m.completed for m in minutes), sum(m.failed for m in minutes)) == (3, 2)
    busy = [m for m in minutes if m.completed or m.failed]
    assert 1 <= len(busy) <= 2  # the current minute (and the one before, at a boundary)
    assert len(await admin.throughput_by_minute(5)) == 5


async def test_per_minute_fills_gaps_with_zeros_and_trims_the_hash(
    admin: QueueAdmin, ledger: JobLedger, redis: Redis
) -> None:
    tpm = ledger.keys.prefix + "tpm"
    minute = await server_ms(redis) // 60_000
    stale = {f"c:{minute - 200 - i}": 1 for i in range(140)}
    counts: dict[Any, Any] = {**stale, f"c:{minute - 5}": 7, f"f:{minute - 30}": 2}
    await redis.hset(tpm, mapping=counts)
    by_start = {m.minute_start_ms: m for m in await admin.throughput_by_minute()}
    assert (by_start[(minute - 5) * 60_000].completed, by_start[(minute - 30) * 60_000].failed) == (
        7, 2)  # fmt: skip
    assert sum(m.completed + m.failed for m in by_start.values()) == 9  # the rest are zeros
    await add(ledger, "a")
    await finish_one(ledger, "a", "completed")
    fields = await redis.hkeys(tpm)
    assert f"c:{minute - 5}" in fields
    assert f"f:{minute - 30}" in fields
    assert not set(stale) & set(fields)  # long gone: trimmed when this minute's bucket opened
    assert len(fields) == 3


async def test_per_minute_refuses_more_than_an_hour(admin: QueueAdmin) -> None:
    for minutes in (0, 61):
        with pytest.raises(InvalidJobError):
            await admin.throughput_by_minute(minutes)


# --- rate usage ----------------------------------------------------------------------------


async def test_rate_usage_counts_starts_in_the_window_without_trimming(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, replace(settings, rate_limit_max=3, rate_limit_duration_ms=400))
    admin = QueueAdmin(ledger)
    assert (await admin.rate_usage()).used == 0
    for i in range(5):
        await add(ledger, f"j{i}")
    assert len((await ledger.claim("w", 5)).jobs) == 3
    usage = await admin.rate_usage()
    assert (usage.used, usage.max, usage.window_ms) == (3, 3, 400)

    async def window_passed() -> bool:
        return (await admin.rate_usage()).used == 0

    await wait_until(window_passed, 3, "the window to slide past the claims")
    assert await redis.zcard(ledger.keys.limiter) == 3  # read-only: only claim trims the log


# --- Redis health --------------------------------------------------------------------------


async def test_redis_health_reads_info(admin: QueueAdmin) -> None:
    health = await admin.redis_health()
    assert health.up
    assert health.version[0].isdigit()
    assert health.used_memory_bytes > 0
    assert health.maxmemory_policy == "noeviction"  # how the test server is started
    assert health.connected_clients >= 1
    assert health.uptime_s >= 0
    assert health.maxmemory_bytes >= 0


async def test_redis_health_down_is_up_false_not_an_error(settings: Settings) -> None:
    client = command_client(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        health = await QueueAdmin(JobLedger(client, settings)).redis_health()
    finally:
        await client.aclose()
    assert (health.up, health.version, health.used_memory_bytes, health.uptime_s) == (
        False, "", 0, 0)  # fmt: skip


@pytest.fixture
def config_disabled_redis(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp_path), "--rename-command", "CONFIG", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not answers("127.0.0.1", port):
            assert proc.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(5)


async def without_policy(client: Redis) -> None:
    """Make this client's INFO look like a server's that leaves the policy out."""
    real = client.info

    async def info(*args: Any, **kwargs: Any) -> dict[str, Any]:
        reply: dict[str, Any] = await real(*args, **kwargs)
        reply.pop("maxmemory_policy", None)
        return reply

    client.info = info  # type: ignore[method-assign]


async def test_redis_health_asks_config_when_info_lacks_the_policy(
    admin: QueueAdmin, redis: Redis
) -> None:
    await without_policy(redis)
    assert (await admin.redis_health()).maxmemory_policy == "noeviction"


async def test_redis_health_tolerates_config_disabled(
    config_disabled_redis: str, settings: Settings
) -> None:
    client = command_client(config_disabled_redis)
    await without_policy(client)
    try:
        health = await QueueAdmin(JobLedger(client, settings)).redis_health()
    finally:
        await client.aclose()
    assert health.up
    assert health.maxmemory_policy == ""
    assert health.used_memory_bytes > 0


# --- dead-letter tracebacks ----------------------------------------------------------------


def render_pixel(depth: int) -> None:
    if depth:
        render_pixel(depth - 1)
    raise ValueError("bad pixel")


def raised(depth: int = 0) -> ValueError:
    try:
        render_pixel(depth)
    except ValueError as exc:
        return exc
    raise AssertionError("render_pixel returned")


def test_a_dead_letter_keeps_its_error_line_and_gains_the_traceback() -> None:
    error = raised(depth=2)
    outcome = RetryPolicy().decide(attempts=4, max_attempts=4, error=error)
    assert outcome.kind == "failed"
    assert outcome.error == describe(error) + " (gave up after 4 attempts)"
    assert outcome.error == "ValueError: bad pixel (gave up after 4 attempts)"
    at, tb = outcome.detail.split(TRACEBACK_MARK)
    assert re.fullmatch(r"at test_admin\.py:\d+ in render_pixel", at)
    assert tb.startswith("Traceback (most recent call last):")
    assert tb.count("in render_pixel") == 3
    assert tb.endswith("ValueError: bad pixel")


def test_only_dead_letters_of_raised_errors_carry_a_traceback() -> None:
    retry = RetryPolicy().decide(attempts=1, max_attempts=4, error=raised())
    assert (retry.kind, retry.error) == ("retry", "ValueError: bad pixel")
    assert re.fullmatch(r"at test_admin\.py:\d+ in render_pixel", retry.detail)
    never_raised = RetryPolicy().decide(attempts=4, max_attempts=4, error=ValueError("x"))
    assert never_raised.error == "ValueError: x (gave up after 4 attempts)"
    assert never_raised.detail == ""


def test_a_long_traceback_keeps_its_last_4000_characters() -> None:
    def layer(n: int, cause: ValueError | None) -> None:
        raise ValueError(f"layer {n}") from cause

    error: ValueError | None = None
    for n in range(60):  # a chain of causes: Python does not fold it as it folds recursion
        try:
            layer(n, error)
        except ValueError as exc:
            error = exc
    assert error is not None
    outcome = RetryPolicy().decide(attempts=4, max_attempts=4, error=error)
    _, tb = outcome.detail.split(TRACEBACK_MARK)
    assert len(tb) == 4000
    assert tb.endswith("ValueError: layer 59")
    assert "layer 0" not in tb  # the oldest causes are the ones cut
    assert outcome.error == "ValueError: layer 59 (gave up after 4 attempts)"


async def test_the_job_keeps_the_traceback_and_the_stream_the_error_line(
    admin: QueueAdmin, ledger: JobLedger
) -> None:
    outcome = RetryPolicy().decide(attempts=1, max_attempts=1, error=raised(depth=1))
    await add(ledger, "f")
    await finish_one(ledger, "f", "failed", outcome.error, outcome.detail)
    stored = await ledger.get_job("f")
    assert (stored.error, stored.error_detail) == (outcome.error, outcome.detail)
    assert "in render_pixel" in stored.error_detail.split(TRACEBACK_MARK)[1]
    [failed] = [e for e in await admin.timeline("f") if e.event == "failed"]
    assert failed.fields["error"] == outcome.error  # the stream never carries the detail


# --- Redis 6.2 -----------------------------------------------------------------------------


@pytest.fixture
async def old_redis_admin(tmp_path: Path) -> AsyncIterator[QueueAdmin]:
    server = EmbeddedRedis(tmp_path, binary=str(BUNDLED))
    url = server.start()
    client = command_client(url)
    yield QueueAdmin(JobLedger(client, Settings(redis_url=url, queue_name="compat")))
    await client.aclose()
    server.stop()


async def test_the_new_scripts_run_on_redis_6_2(old_redis_admin: QueueAdmin) -> None:
    admin, ledger = old_redis_admin, old_redis_admin.ledger
    await add(ledger, "a", user_id="u", ref="r")
    await add(ledger, "d", user_id="u", ref="r", delay_ms=60_000)
    await admin.promote("d")
    assert ids(await admin.list_jobs(JobState.WAITING)) == ["a", "d"]
    await finish_one(ledger, "a", "completed")
    await admin.remove("d")
    assert ids(await admin.search("r")) == ["a"]
    assert (await admin.rate_usage()).used == 1  # the default limit: 10 a second
    assert sum(m.completed for m in await admin.throughput_by_minute()) == 1
    assert [e.event for e in await admin.timeline("a")] == ["waiting", "active", "completed"]
    await ledger.clean(keep_completed_ms=0)
    assert await admin.search("u") == []
    assert (await admin.redis_health()).version.startswith("6.2")
