"""Engine benchmark: our broker against stock taskiq-redis and BullMQ, as one JSON line.

In one process tree, on a private redis-server: the enqueue rate (64 concurrent single
adds); the processing rate of ``--processes`` worker processes of ``--slots`` slots each
(2 x 5 by default; ours, stock ``RedisStreamBroker`` with the same no-op task and the same
receiver settings, and BullMQ's ``Worker`` from ``bench/peers/engine.js`` with the same
concurrency and jobs carrying as many bytes of data as our message), measured over the
steady part of each drain (10 % to 90 % of the jobs done), interleaved over several rounds
and reported as medians;
Redis memory per waiting and per completed job; and the sliding-window rate limit under a
backlog (the busiest window, and how much of the limit was used); and the claim script's cost
with one user and with 10,000 users waiting (``bench.claims``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.apps import STOCK_QUEUE, stock_broker
from bench.bullmq import bullmq_version, round_bullmq
from bench.claims import fairness_costs
from bench.drain import drain_rate, kick_all, used_memory
from bench.procs import stop
from imagequeue_common.contracts import NOOP_TASK
from imagequeue_common.embedded_redis import EmbeddedRedis
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings
from imagequeue_worker.app import build_broker

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 5  # the seed's slots per worker, for both brokers
ENGINE_WORKER = ["imagequeue_worker", "run", "--processes", "2", "--broker",
                 "bench.apps:engine_broker"]  # fmt: skip


def engine_worker(processes: int) -> list[str]:
    """Our worker command with ``processes`` processes (their slots: WORKER_CONCURRENCY)."""
    return [*ENGINE_WORKER[:3], str(processes), *ENGINE_WORKER[4:]]


def stock_worker(processes: int, slots: int) -> list[str]:
    """Stock taskiq's worker command, the same shape as ours."""
    return ["taskiq", "worker", "bench.apps:stock_broker", "--workers", str(processes),
            "--max-async-tasks", str(slots), "--max-prefetch", "0",
            "--log-level", "WARNING"]  # fmt: skip


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
        stop(self.proc, group=True, signum=signal.SIGINT, timeout_s=30)


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
    url: str, jobs: int, redis: Redis, queue: str, redis_pid: int, *, shape: tuple[int, int]
) -> dict[str, float]:
    """One round of ours: enqueue, memory while waiting, drain, memory when completed."""
    settings = Settings(redis_url=url, queue_name=queue, rate_limit_max=0,
                        worker_concurrency=shape[1])  # fmt: skip
    broker = build_broker(settings)
    await broker.startup()
    noop = broker.find_task(NOOP_TASK)
    assert noop is not None
    base = await used_memory(redis)
    enqueue_rate = await kick_all(noop.kiq, jobs)
    waiting_bytes = (await used_memory(redis) - base) / jobs
    sample = await broker.ledger.client.zrange(broker.ledger.keys.waiting, 0, 0)
    payload = len((await broker.ledger.get_job(str(sample[0]))).payload)
    workers = Workers(engine_worker(shape[0]), engine_env(settings))
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


async def round_stock(
    url: str, jobs: int, redis: Redis, redis_pid: int, *, shape: tuple[int, int]
) -> dict[str, float]:
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

    workers = Workers(stock_worker(*shape), {"REDIS_URL": url})
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
    bull: list[dict[str, float]] = []
    shape = (args.processes, args.slots)
    for i in range(args.rounds):
        ours.append(await round_engine(url, args.jobs, redis, f"bench-engine-{i}", redis_pid,
                                       shape=shape))  # fmt: skip
        stock.append(await round_stock(url, args.jobs, redis, redis_pid, shape=shape))
        if not args.no_bullmq:
            size = int(ours[-1]["payload_bytes"])
            bull.append(await round_bullmq(url, args.jobs, redis, redis_pid, shape=shape,
                                           payload_bytes=size))  # fmt: skip
    limited = await rate_limit_run(url, args.rate_limit, args.windows, redis_pid)
    claims = await fairness_costs(url, redis, args.claim_jobs)
    figures = {k: round(median(ours, k), 1) for k in ours[0]}
    figures |= {k: round(median(stock, k), 1) for k in stock[0]}
    if bull:
        figures |= {k: round(median(bull, k), 1) for k in bull[0]}
        for ratio, key in (
            ("ratio_vs_bullmq", "process_per_s"),
            ("enqueue_ratio_vs_bullmq", "enqueue_per_s"),
        ):
            figures[ratio] = round(figures[key] / figures[f"bullmq_{key}"], 2)
        figures["bullmq"] = bullmq_version()  # type: ignore[assignment]
    return {
        "bench": "engine", "jobs": args.jobs, "rounds": args.rounds,
        "shape": f"{args.processes} x {args.slots}", **figures,
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
    parser.add_argument("--processes", type=int, default=2, help="worker processes per broker")
    parser.add_argument("--slots", type=int, default=CONCURRENCY, help="slots per process")
    parser.add_argument("--no-bullmq", action="store_true", help="leave BullMQ out")
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
