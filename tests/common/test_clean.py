"""Retention: clean removes exactly the finished jobs past their age, and nothing else."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.settings import Settings
from tests.support.procs import server_ms


async def finish_all(ledger: JobLedger, prefix: str, n: int, kind: str) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(n)]
    for job_id in ids:
        await ledger.enqueue(job_id, "t", "{}")
    for job in (await ledger.claim("w", n)).jobs:
        await ledger.finish([FinishOp(job.job_id, job.token, kind, "1", "err")])  # type: ignore[arg-type]
    return ids


async def test_clean_removes_exactly_what_is_past_retention(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, settings)
    old_done = await finish_all(ledger, "old-c", 30, "completed")
    old_failed = await finish_all(ledger, "old-f", 20, "failed")
    boundary = await server_ms(redis)
    await asyncio.sleep(0.02)  # a gap between old and new; the cut below is measured, not assumed
    new_done = await finish_all(ledger, "new-c", 10, "completed")
    new_failed = await finish_all(ledger, "new-f", 5, "failed")
    waiting = ["still-waiting"]
    await ledger.enqueue(waiting[0], "t", "{}")

    keep = await server_ms(redis) - boundary - 2  # old ones are past it, new ones are not
    report = await ledger.clean(keep_completed_ms=keep, keep_failed_ms=keep)

    assert (report.completed, report.failed) == (30, 20)
    for job_id in old_done + old_failed:
        assert await redis.exists(ledger.keys.job(job_id)) == 0
    for job_id in new_done + new_failed + waiting:
        assert await redis.exists(ledger.keys.job(job_id)) == 1
    stats = await ledger.stats()
    assert (stats.completed, stats.failed, stats.waiting) == (10, 5, 1)


async def test_failed_jobs_are_kept_longer_than_completed(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, settings)
    await finish_all(ledger, "c", 3, "completed")
    await finish_all(ledger, "f", 3, "failed")
    report = await ledger.clean(keep_completed_ms=0, keep_failed_ms=7 * 24 * 3600_000)
    assert (report.completed, report.failed) == (3, 0)
    assert (await ledger.stats()).failed == 3


async def test_clean_with_defaults_keeps_fresh_jobs(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, settings)
    await finish_all(ledger, "c", 600, "completed")  # more than one batch of the script
    assert (await ledger.clean()).completed == 0
    report = await ledger.clean(keep_completed_ms=0)
    assert report.completed == 600
    assert await redis.zcard(ledger.keys.completed) == 0
