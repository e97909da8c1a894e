"""What the queue is doing right now, for the ETA: the running jobs and the last minute's
arrivals per priority (counted by ``enqueue.lua``)."""

from __future__ import annotations

import msgspec

from imagequeue_common.contracts import Priority
from imagequeue_common.queue.ledger import JobLedger


class Flow(msgspec.Struct, frozen=True):
    """The jobs of one priority added over the last minute (1 s buckets)."""

    count: int
    span_s: float
    """From the start of the first second with an arrival to now (0: none)."""
    quiet_s: float
    """Since the end of the last second with an arrival (0: arrivals this second)."""

    @property
    def live(self) -> bool:
        """Still flowing: the time since the last arrival is within five mean gaps of the
        flow (one arrival every ``span / count``) — a burst that stopped has ended, a
        steady trickle with a chance pause has not (a Poisson flow is that quiet for
        five mean gaps less than 1 % of the time)."""
        return self.count > 0 and self.quiet_s <= 5 * self.span_s / self.count


async def running(ledger: JobLedger) -> list[tuple[Priority, float]]:
    """Each running job's priority and how long it has been running, in seconds
    (Redis server time)."""
    ids: list[str] = await ledger.client.zrange(ledger.keys.active, 0, -1)  # type: ignore[assignment]
    now_ms = await ledger.server_ms()
    async with ledger.client.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(ledger.keys.job(job_id), ["priority", "started_at"])
        fields = await pipe.execute()
    return [(Priority(p), max(now_ms - int(s), 0) / 1000) for p, s in fields if p and s]


async def arrivals(ledger: JobLedger, key: str | None = None) -> dict[Priority, Flow]:
    """Per priority, the jobs added in the last minute (1 s buckets, see ``enqueue.lua``);
    with ``key``, those counted there instead (``QueueKeys.turns``: the ones that took the
    next turn of their priority)."""
    now_s = await ledger.server_ms() / 1000
    raw = await ledger.client.hgetall(key or ledger.keys.arrivals)
    buckets: dict[Priority, list[tuple[int, int]]] = {p: [] for p in Priority}
    for field, value in raw.items():
        priority, _, second = str(field).partition(":")
        if int(second) > now_s - 60:
            buckets[Priority(priority)].append((int(second), int(value)))
    flows = {}
    for priority, seen in buckets.items():
        if not seen:
            flows[priority] = Flow(0, 0.0, 0.0)
            continue
        first, last = min(s for s, _ in seen), max(s for s, _ in seen)
        count = sum(n for _, n in seen)
        flows[priority] = Flow(count, now_s - first, max(now_s - (last + 1), 0.0))
    return flows
