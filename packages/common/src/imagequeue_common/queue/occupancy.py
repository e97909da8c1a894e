"""What the queue is doing right now, for the ETA: the running jobs, the waiting ones per
priority, and the last minute's arrivals per priority (counted by ``enqueue.lua``)."""

from __future__ import annotations

import msgspec

from imagequeue_common.contracts import Priority
from imagequeue_common.queue.ledger import JobLedger


class Arrivals(msgspec.Struct, frozen=True):
    """Jobs added per priority over the last minute, and over how long that was observed."""

    counts: dict[Priority, int]
    observed_s: float
    """From the first second with an arrival in the window to now (0: none)."""


async def running(ledger: JobLedger) -> list[tuple[Priority, float]]:
    """Each running job's priority and how long it has been running, in seconds
    (Redis server time)."""
    ids: list[str] = await ledger.client.zrange(ledger.keys.active, 0, -1)  # type: ignore[assignment]
    async with ledger.client.pipeline(transaction=False) as pipe:
        pipe.time()
        for job_id in ids:
            pipe.hmget(ledger.keys.job(job_id), ["priority", "started_at"])
        (seconds, micros), *fields = await pipe.execute()
    now_ms = seconds * 1000 + micros / 1000
    return [(Priority(p), max(now_ms - int(s), 0) / 1000) for p, s in fields if p and s]


async def waiting_by_priority(ledger: JobLedger) -> dict[Priority, int]:
    """Waiting jobs per priority (the waiting set's score ranges, see ``_lib.lua``)."""
    async with ledger.client.pipeline(transaction=False) as pipe:
        for rank, _ in enumerate(Priority):
            pipe.zcount(ledger.keys.waiting, rank * 10**13, f"({(rank + 1) * 10**13}")
        counts = await pipe.execute()
    return {p: int(n) for p, n in zip(Priority, counts, strict=True)}


async def arrivals(ledger: JobLedger) -> Arrivals:
    """Jobs added per priority in the last minute (1 s buckets, see ``enqueue.lua``)."""
    async with ledger.client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.hgetall(ledger.keys.prefix + "arr")
        (seconds, micros), raw = await pipe.execute()
    now_s = seconds + micros / 1e6
    counts = dict.fromkeys(Priority, 0)
    first = now_s
    for field, value in raw.items():
        priority, _, second = str(field).partition(":")
        if int(second) > now_s - 60:
            counts[Priority(priority)] += int(value)
            first = min(first, int(second))
    return Arrivals(counts, now_s - first)
