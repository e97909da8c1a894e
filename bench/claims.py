"""The claim script's cost with many users waiting next to one: fair share must keep a claim
O(log n) in waiting jobs and users.

A backlog of ``jobs`` waiting jobs is spread over ``users`` users; then one simulated worker
drains it in claims of 5 (each claim also ends the previous five runs, as a worker's claim
does). Reported per claim: Redis' own time inside the script (``INFO commandstats``, reset
before the drain, so nothing else is counted) and the wall time of the round trip.
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio import Redis

from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.settings import PriorityPolicy, Settings

WANT = 5  # the seed's slots per worker


def user_of(i: int, users: int, flooder: bool) -> str:
    """Job ``i``'s user: ``u<i mod users>``, or every other job the flooder's."""
    return "flooder" if flooder and i % 2 == 0 else f"u{i % users}"


async def fill(ledger: JobLedger, jobs: int, users: int, flooder: bool) -> None:
    """``jobs`` waiting jobs, enqueued 256 concurrently at a time (one pipeline each)."""
    for start in range(0, jobs, 256):
        await asyncio.gather(*(
            ledger.enqueue(f"j{i}", "bench.noop", "{}", user_id=user_of(i, users, flooder))
            for i in range(start, min(start + 256, jobs))
        ))  # fmt: skip


async def claim_cost(
    url: str,
    redis: Redis,
    *,
    jobs: int,
    users: int,
    cap: int = 0,
    policy: PriorityPolicy = "strict",
    flooder: bool = False,
) -> dict[str, float]:
    """Redis µs and wall µs per claim of ``WANT`` while draining the backlog."""
    queue = f"bench-claims-{users}-{cap}-{policy}-{flooder}"
    settings = Settings(redis_url=url, queue_name=queue, rate_limit_max=0,
                        user_max_active=cap, priority_policy=policy)  # fmt: skip
    ledger = JobLedger(redis, settings)
    await fill(ledger, jobs, users, flooder)
    await redis.config_resetstat()
    finished: list[FinishOp] = []
    claims = 0
    started = time.perf_counter()
    while True:
        result = await ledger.claim("bench", WANT, finished)
        claims += 1
        finished = [FinishOp(j.job_id, j.token, "completed", "{}", "", "") for j in result.jobs]
        if not result.jobs:
            break
    wall_us = (time.perf_counter() - started) * 1e6 / claims
    stats = await redis.info("commandstats")
    script = stats.get("cmdstat_evalsha") or stats["cmdstat_eval"]
    left = (await ledger.stats()).waiting
    if left:
        raise RuntimeError(f"{left} jobs were left waiting")
    await ledger.clean(keep_completed_ms=0)
    return {"redis_us_per_claim": float(script["usec_per_call"]), "wall_us_per_claim": wall_us}


async def fairness_costs(url: str, redis: Redis, jobs: int) -> dict[str, float]:
    """The claim's cost with one user and with 10,000 users waiting (strict, weighted),
    and with half the jobs one user's, capped at one running job (each of its jobs is
    parked once and brought back when its run before ends)."""
    figures: dict[str, float] = {}
    cases = {
        "1_user": {"users": 1},
        "10k_users": {"users": 10_000},
        "10k_users_weighted": {"users": 10_000, "policy": "weighted"},
        "10k_users_flooder_cap_1": {"users": 10_000, "cap": 1, "flooder": True},
    }
    for name, case in cases.items():
        cost = await claim_cost(url, redis, jobs=jobs, **case)  # type: ignore[arg-type]
        figures[f"claim_redis_us_{name}"] = round(cost["redis_us_per_claim"], 1)
        figures[f"claim_wall_us_{name}"] = round(cost["wall_us_per_claim"], 1)
    return figures
