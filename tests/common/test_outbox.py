"""The outbox: a job's subscribed events enter it in the same script as the change they
tell of (started, progress at most once a second, completed, failed, cancelled, expired);
nothing for events it did not ask for, nothing for a job without a webhook. Also run on a
Redis Cluster (``just test-cluster``): the outbox shares the queue's slot."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.settings import Settings
from imagequeue_common.webhooks import event_letters
from tests.support.procs import stream_events


async def outbox(redis: Redis, ledger: JobLedger) -> list[tuple[str, str]]:
    entries = await stream_events(redis, ledger.keys.prefix + "outbox")
    return [(fields["job"], fields["event"]) for _, fields in entries]


async def test_subscribed_events_enter_the_outbox_with_the_change(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, settings)
    all_events = event_letters(["started", "progress", "completed", "failed", "cancelled"])
    await ledger.enqueue("hooked", "t", "{}", hooks=all_events)
    await ledger.enqueue("finals", "t", "{}", hooks=event_letters(["completed", "failed"]))
    await ledger.enqueue("plain", "t", "{}")
    claimed = {c.job_id: c for c in (await ledger.claim("w", 3)).jobs}
    assert set(claimed) == {"hooked", "finals", "plain"}
    for job_id, run in claimed.items():
        await ledger.progress(job_id, run.token, 10)
        await ledger.progress(job_id, run.token, 20)  # within the second: coalesced
    await ledger.finish([FinishOp(j, c.token, "completed", "{}") for j, c in claimed.items()])
    assert await outbox(redis, ledger) == [
        ("hooked", "active"), ("hooked", "progress"), ("hooked", "completed"),
        ("finals", "completed"),
    ]  # fmt: skip


async def test_progress_goes_out_at_most_once_a_second(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, settings)
    await ledger.enqueue("slow", "t", "{}", hooks=event_letters(["progress"]))
    (run,) = (await ledger.claim("w", 1)).jobs
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() - started < 2.3:  # three seconds begun: at most three progress events
        await ledger.progress("slow", run.token, int((loop.time() - started) * 40))
        await asyncio.sleep(0.05)
    sent = [e for _, e in await outbox(redis, ledger)]
    assert sent == ["progress"] * len(sent)
    assert 2 <= len(sent) <= 3, sent


async def test_cancelled_and_expired_waiting_jobs_tell_their_webhooks(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, settings)
    await ledger.enqueue("dropped", "t", "{}", hooks=event_letters(["cancelled", "started"]))
    await ledger.enqueue("late", "t", "{}", start_deadline_ms=1,
                         hooks=event_letters(["expired"]))  # fmt: skip
    await ledger.cancel("dropped")
    await asyncio.sleep(0.01)  # past the 1 ms deadline by Redis' clock, too
    await ledger.recover_stalled()  # the heartbeat's sweep expires it
    assert (await ledger.get_job("late")).state == JobState.EXPIRED
    assert await outbox(redis, ledger) == [("dropped", "cancelled"), ("late", "expired")]
