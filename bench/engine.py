"""Engine benchmark: our broker against stock taskiq-redis, printed as one JSON line.

In one process tree, on a private redis-server: the enqueue rate; the processing rate of
two worker processes (ours, and stock ``RedisStreamBroker`` with the same no-op task and
the same receiver settings), measured over the steady part of each drain (10 % to 90 % of
the jobs done), interleaved over several rounds and reported as medians;
Redis memory per waiting and per completed job; and the sliding-window rate limit under a
backlog (the busiest window, and how much of the limit was used); and the claim script's cost
with one user and with 10,000 users waiting (``bench.claims``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil
from redis.asyncio import Redis

from bench.apps import STOCK_QUEUE, stock_broker
from bench.claims import fairness_costs
from imagequeue_common.contracts import NOOP_TASK
from imagequeue_common.embedded_redis import EmbeddedRedis
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings
from imagequeue_worker.app import build_broker

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 5  # the seed's slots per worker, for both brokers
STEADY_FROM, STEADY_TO = 0.1, 0.9  # the part of each drain that rates are measured over
ENGINE_WORKER = ["imagequeue_worker", "run", "--processes", "2", "--broker",
                 "bench.apps:engine_broker"]  # fmt: skip
STOCK_WORKER = ["taskiq", "worker", "bench.apps:stock_broker", "--workers", "2",
                "--max-async-tasks", str(CONCURRENCY), "--max-prefetch", "0",
                "--log-level", "WARNING"]  # fmt: skip


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


class Workers:
    """Worker processes of one kind, started and stopped around a measurement."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *args],
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        """The worker manager's pid (its children are the worker processes)."""
        return self.proc.pid

    def stop(self) -> None:
        """SIGINT the process group; SIGKILL if it does not stop."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


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


def engine_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker process ``settings``."""
    return {
        "REDIS_URL": settings.redis_url or "",
        "QUEUE_NAME": settings.queue_name,
        "RATE_LIMIT_MAX": str(settings.rate_limit_max),
        "RATE_LIMIT_DURATION_MS": str(settings.rate_limit_duration_ms),
        "WORKER_CONCURRENCY": str(settings.worker_concurrency),
        "AI_GENERATION_ENABLED": "false",  # the no-op task only: no store, no upstream
        "LOG_LEVEL": "warning",  # as stock runs (--log-level WARNING): no line per job
    }


async def completed(broker: EngineBroker) -> int:
    """Jobs completed on ``broker``'s queue."""
    return (await broker.ledger.stats()).completed


async def round_engine(
    url: str, jobs: int, redis: Redis, queue: str, redis_pid: int
) -> dict[str, float]:
    """One round of ours: enqueue, memory while waiting, drain, memory when completed."""
    settings = Settings(redis_url=url, queue_name=queue, rate_limit_max=0,
                        worker_concurrency=CONCURRENCY)  # fmt: skip
    broker = build_broker(settings)
    await broker.startup()
    noop = broker.find_task(NOOP_TASK)
    assert noop is not None
    base = await used_memory(redis)
    enqueue_rate = await kick_all(noop.kiq, jobs)
    waiting_bytes = (await used_memory(redis) - base) / jobs
    sample = await broker.ledger.client.zrange(broker.ledger.keys.waiting, 0, 0)
    payload = len((await broker.ledger.get_job(str(sample[0]))).payload)
    workers = Workers(ENGINE_WORKER, engine_env(settings))
    try:
        rate, cpu = await drain_rate(lambda: completed(broker), jobs, 600, [redis_pid, workers.pid])
    finally:
        workers.stop()
    completed_bytes = (await used_memory(redis) - base) / jobs
    await broker.ledger.clean(keep_completed_ms=0)
    await broker.shutdown()
    return {"enqueue_per_s": enqueue_rate, "process_per_s": rate, "cpu_us_per_job": cpu,
            "payload_bytes": payload,
            "redis_bytes_per_waiting_job": waiting_bytes,
            "redis_bytes_per_completed_job": completed_bytes}  # fmt: skip


async def round_stock(url: str, jobs: int, redis: Redis, redis_pid: int) -> dict[str, float]:
    """One round of stock taskiq-redis ``RedisStreamBroker``: enqueue, then drain."""
    await redis.delete(STOCK_QUEUE)
    os.environ["REDIS_URL"] = url
    broker = stock_broker()
    await broker.startup()
    noop = broker.find_task(NOOP_TASK)
    assert noop is not None
    enqueue_rate = await kick_all(noop.kiq, jobs)

    async def acked() -> int:  # delivered to the group and acknowledged (Redis >= 7)
        group = (await redis.xinfo_groups(STOCK_QUEUE))[0]
        return int(group["entries-read"] or 0) - int(group["pending"])

    workers = Workers(STOCK_WORKER, {"REDIS_URL": url})
    try:
        rate, cpu = await drain_rate(acked, jobs, 600, [redis_pid, workers.pid])
    finally:
        workers.stop()
    await broker.shutdown()
    return {"stock_enqueue_per_s": enqueue_rate, "stock_process_per_s": rate,
            "stock_cpu_us_per_job": cpu}  # fmt: skip


async def rate_limit_run(url: str, limit: int, windows: int, redis_pid: int) -> dict[str, float]:
    """A backlog larger than ``windows`` windows can start: busiest window and use of it."""
    settings = Settings(redis_url=url, queue_name="bench-rate", rate_limit_max=limit,
                        rate_limit_duration_ms=1000, worker_concurrency=CONCURRENCY)  # fmt: skip
    broker = build_broker(settings)
    await broker.startup()
    noop = broker.find_task(NOOP_TASK)
    assert noop is not None
    jobs = limit * (windows + 2)
    ids = [(await noop.kiq()).task_id for _ in range(jobs)]
    workers = Workers(ENGINE_WORKER, engine_env(settings))
    try:
        await drain_rate(lambda: completed(broker), jobs, 120 + windows * 3, [redis_pid])
    finally:
        workers.stop()
    starts = sorted([(await broker.ledger.get_job(i)).started_at or 0 for i in ids])
    await broker.shutdown()
    window = settings.rate_limit_duration_ms
    busiest = max(sum(1 for t in starts[i:] if t < s + window) for i, s in enumerate(starts))
    # The queue is backlogged for all of the first `windows` windows after the first start.
    used = sum(1 for t in starts if t < starts[0] + windows * window)
    return {"rate_limit": limit, "max_starts_any_window": busiest,
            "utilization": used / (limit * windows)}  # fmt: skip


def median(rounds: list[dict[str, float]], key: str) -> float:
    """The median of one figure over the rounds."""
    return statistics.median(r[key] for r in rounds)


async def run(args: argparse.Namespace, url: str, redis: Redis) -> dict[str, Any]:
    """Every measurement, ours and stock interleaved round by round."""
    redis_pid = int((await redis.info("server"))["process_id"])
    ours: list[dict[str, float]] = []
    stock: list[dict[str, float]] = []
    for i in range(args.rounds):
        ours.append(await round_engine(url, args.jobs, redis, f"bench-engine-{i}", redis_pid))
        stock.append(await round_stock(url, args.jobs, redis, redis_pid))
    limited = await rate_limit_run(url, args.rate_limit, args.windows, redis_pid)
    claims = await fairness_costs(url, redis, args.claim_jobs)
    figures = {k: round(median(ours, k), 1) for k in ours[0]}
    figures |= {k: round(median(stock, k), 1) for k in stock[0]}
    return {
        "bench": "engine", "jobs": args.jobs, "rounds": args.rounds, **figures,
        "ratio_vs_stock": round(figures["process_per_s"] / figures["stock_process_per_s"], 2),
        "cpu_ratio_vs_stock": round(figures["stock_cpu_us_per_job"] / figures["cpu_us_per_job"], 2),
        "process_per_s_rounds": [round(r["process_per_s"]) for r in ours],
        "stock_process_per_s_rounds": [round(r["stock_process_per_s"]) for r in stock],
        **{k: round(v, 3) for k, v in limited.items()},
        **claims,
    }  # fmt: skip


async def main() -> None:
    """Parse arguments, start a private Redis, measure, print one JSON line."""
    parser = argparse.ArgumentParser(prog="just bench-engine")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--rate-limit", type=int, default=50)
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument(
        "--claim-jobs",
        type=int,
        default=20_000,
        help="the backlog drained for the claim cost with 1 and 10,000 users",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp))
        url = server.start()
        redis = command_client(url)
        try:
            info = await redis.info("server")
            result = await run(args, url, redis)
        finally:
            await redis.aclose()
            server.stop()
    result["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
                         f"{platform.python_version()}, Redis {info['redis_version']}")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
