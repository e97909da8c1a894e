"""Under steady load with cleaning, Redis holds the same keys round after round."""

from __future__ import annotations

from redis.asyncio import Redis

from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.settings import Settings, replace


async def queue_keys(redis: Redis, queue: str) -> int:
    return len([k async for k in redis.scan_iter(match=f"*{{{queue}}}*", count=1000)])


async def test_keys_and_stream_stay_flat(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, replace(settings, events_maxlen=500))
    sizes = []
    for rnd in range(6):
        for i in range(300):
            await ledger.enqueue(f"r{rnd}-{i}", "t", '{"n":1}')
        while jobs := (await ledger.claim("w", 50)).jobs:
            await ledger.finish([FinishOp(j.job_id, j.token, "completed", "1") for j in jobs])
        await ledger.clean(keep_completed_ms=0)
        sizes.append(await queue_keys(redis, settings.queue_name))
        # 1,800 events so far; the stream keeps about its cap (plus one node of slack).
        assert await redis.xlen(ledger.keys.events) <= 600
    assert len(set(sizes)) == 1, sizes  # no key is left behind by a finished, cleaned job
