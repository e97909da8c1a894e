"""How the engine benchmarks measure: enqueue rates, Redis memory, and the steady part of
a drain (jobs per second and CPU per job of Redis and the workers), the same for every
broker measured (ours, stock taskiq-redis, BullMQ)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psutil
from redis.asyncio import Redis

STEADY_FROM, STEADY_TO = 0.1, 0.9  # the part of each drain that rates are measured over


async def kick_all(kick: Callable[[], Awaitable[Any]], n: int, lanes: int = 64) -> float:
    """Enqueue ``n`` jobs from ``lanes`` concurrent senders; returns jobs per second."""
    started = time.perf_counter()

    async def lane(count: int) -> None:
        for _ in range(count):
            await kick()

    await asyncio.gather(*(lane(n // lanes + (i < n % lanes)) for i in range(lanes)))
    return n / (time.perf_counter() - started)


async def used_memory(redis: Redis) -> int:
    """Redis ``used_memory`` in bytes."""
    return int((await redis.info("memory"))["used_memory"])


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes and all their children."""
    total = 0.0
    for pid in pids:
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = p.cpu_times()
                total += times.user + times.system
    return total


async def drain_rate(
    done: Callable[[], Awaitable[int]], n: int, timeout_s: float, pids: list[int]
) -> tuple[float, float]:
    """Jobs per second, and CPU microseconds per job of ``pids`` (Redis and the workers),
    in the steady part of the drain: from the first poll that sees ``STEADY_FROM`` of the
    jobs done to the first that sees ``STEADY_TO``. Both brokers are measured the same way;
    the window leaves out the workers' start-up (imports, connecting, the second process
    starting later than the first) and the tail, where fewer than all slots have work.

    CPU time per job is the steadier figure on a shared machine: time stolen by
    neighbours slows the wall clock but is not charged as CPU time.
    """
    deadline = time.monotonic() + timeout_s
    low, high = round(n * STEADY_FROM), round(n * STEADY_TO)
    first_count, first_at, first_cpu = 0, 0.0, 0.0
    while time.monotonic() < deadline:
        count = await done()
        now = time.perf_counter()
        if count >= low and not first_at:
            first_count, first_at, first_cpu = count, now, cpu_seconds(pids)
        if count >= high:
            jobs = count - first_count
            rate = jobs / (now - first_at), (cpu_seconds(pids) - first_cpu) * 1e6 / jobs
            await wait_until(done, n, deadline)
            return rate
        await asyncio.sleep(0.01)
    raise TimeoutError(f"only {await done()} of {n} jobs done in {timeout_s}s")


async def wait_until(done: Callable[[], Awaitable[int]], n: int, deadline: float) -> None:
    """Poll until all ``n`` jobs are done (the round's memory figure needs them all)."""
    while await done() < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {await done()} of {n} jobs done in time")
        await asyncio.sleep(0.01)
