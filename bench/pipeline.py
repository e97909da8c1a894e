"""Pipeline benchmark: images end to end through real workers, the stub AI server and SQLite.

Two runs on a private redis-server, printed as one JSON line:

- ``limited`` — the seed's settings (10 starts/s, 5 slots per worker) and a fixed stub
  latency: how close the drain of a backlog comes to the physical limit
  ``max(N / rate, N * latency / slots) + latency``, and the most submissions the stub saw in
  any 1-second window (must not exceed the rate limit).
- ``unlimited`` — no rate limit and an instant stub: images per second and worker CPU per
  image, the pipeline's own cost (prompt, HTTP, full decode, fsynced file, store update).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.drain import cpu_seconds
from bench.engine import ROOT, Workers
from imagequeue_common.contracts import CharacterRef, PoseRef
from imagequeue_common.embedded_redis import EmbeddedRedis, free_port
from imagequeue_common.generation import add_image_generation_job
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.keys import QueueKeys
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings, replace
from imagequeue_common.store import NewCharacter, open_store

WORKER = ["imagequeue_worker", "run", "--processes"]


class Stub:
    """The stub AI server as a child process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loadtest.stub_ai", "--port", str(self.port)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not self._answers():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the stub AI server did not start")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/stub/stats", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def setup(self, latency_s: float) -> None:
        """Fixed latency, no faults, statistics cleared."""
        config = {"latency_min_s": latency_s, "latency_max_s": latency_s, "time_scale": 1.0}
        httpx.post(f"{self.url}/stub/config", json=config, timeout=5).raise_for_status()
        httpx.post(f"{self.url}/stub/reset", timeout=5).raise_for_status()

    def stats(self) -> dict[str, Any]:
        """``GET /stub/stats``."""
        answer: dict[str, Any] = httpx.get(f"{self.url}/stub/stats", timeout=5).json()
        return answer

    def stop(self) -> None:
        """Terminate it."""
        self.proc.terminate()
        self.proc.wait(10)


def worker_env(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker process ``settings``."""
    return {
        "REDIS_URL": settings.redis_url or "",
        "QUEUE_NAME": settings.queue_name,
        "RATE_LIMIT_MAX": str(settings.rate_limit_max),
        "WORKER_CONCURRENCY": str(settings.worker_concurrency),
        "AI_GENERATION_API_URL": settings.ai_generation_api_url or "",
        "DATABASE_URL": settings.database_url,
        "ASSETS_DIR": settings.assets_dir,
    }


async def until(check: Callable[[], Awaitable[bool]], poll_s: float = 0.02) -> None:
    """Poll ``check`` until it holds."""
    while True:
        if await check():
            return
        await asyncio.sleep(poll_s)


@contextlib.asynccontextmanager
async def redis_and_stub(tmp: Path) -> AsyncIterator[tuple[str, Redis, Stub]]:
    """A private redis-server under ``tmp`` (its URL and a client) and the stub AI server,
    all stopped afterwards."""
    server = EmbeddedRedis(tmp / "redis")
    url = server.start()
    redis = command_client(url)
    stub = Stub()
    try:
        yield url, redis, stub
    finally:
        stub.stop()
        await redis.aclose()
        server.stop()


async def one_run(
    settings: Settings, stub: Stub, redis: Redis, *, jobs: int, processes: int, latency_s: float
) -> dict[str, Any]:
    """Start workers, queue ``jobs`` characters' images, wait for all; the figures."""
    stub.setup(latency_s)
    store = await open_store(settings.database_url)
    broker = EngineBroker(settings, settings.redis_url or "")
    await broker.startup()
    workers = Workers([*WORKER, str(processes)], worker_env(settings))
    try:
        key = QueueKeys.for_queue(settings.queue_name).workers

        async def started() -> bool:
            return int(await redis.zcard(key)) >= processes

        async def drained() -> bool:
            return (await broker.ledger.stats()).completed >= jobs

        await until(started)
        pose = (await store.list_poses())[0]
        chars = [
            await store.create_character(
                NewCharacter(user_id="bench", name=f"Bench {i}", pose_id=pose.id)
            )
            for i in range(jobs)
        ]
        cpu0, t0 = cpu_seconds([workers.pid]), time.monotonic()
        ids = [await add_image_generation_job(broker, CharacterRef(id=c.id, name=c.name),
                                              PoseRef(id=pose.id, name=pose.name), "bench")
               for c in chars]  # fmt: skip
        await until(drained)
        drain_s, cpu = time.monotonic() - t0, cpu_seconds([workers.pid]) - cpu0
        runs = [await broker.ledger.get_job(i) for i in ids]
        over = sorted((j.finished_at or 0) - (j.started_at or 0) - latency_s * 1000 for j in runs)
        urls = [len((await store.get_character(c.id)).display_image_urls) for c in chars]
        files = len(list((Path(settings.assets_dir) / "characters").glob("*.png")))
    finally:
        workers.stop()
        await broker.shutdown()
        await store.close()
    stats = stub.stats()
    return {
        "jobs": jobs, "worker_processes": processes, "latency_s": latency_s,
        "drain_s": round(drain_s, 2), "images_per_s": round(jobs / drain_s, 1),
        "worker_cpu_ms_per_image": round(cpu * 1000 / jobs, 2),
        "overhead_ms_p50": round(statistics.median(over), 1),
        "overhead_ms_p95": round(over[int(len(over) * 0.95)], 1),
        "stub_peak_per_second": stats["peak_per_second"],
        "one_url_per_character": all(n == 1 for n in urls), "files": files,
    }  # fmt: skip


async def main() -> None:
    """Parse arguments, start a private Redis and the stub, measure, print one JSON line."""
    parser = argparse.ArgumentParser(prog="just bench-pipeline")
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.5, help="stub seconds per image")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--fast-jobs", type=int, default=400)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        async with redis_and_stub(Path(tmp)) as (url, redis, stub):
            # One bench user owns every job: no per-user quota (USER_MAX_PENDING).
            base = Settings(redis_url=url, ai_generation_api_url=f"{stub.url}/generate",
                            user_max_pending=0)  # fmt: skip
            limited = replace(base, queue_name="bench-limited",
                              database_url=f"sqlite:///{tmp}/limited.db",
                              assets_dir=f"{tmp}/limited")  # fmt: skip
            fast = replace(base, queue_name="bench-fast", rate_limit_max=0,
                           database_url=f"sqlite:///{tmp}/fast.db",
                           assets_dir=f"{tmp}/fast")  # fmt: skip
            a = await one_run(limited, stub, redis, jobs=args.jobs, processes=args.processes,
                              latency_s=args.latency)  # fmt: skip
            b = await one_run(fast, stub, redis, jobs=args.fast_jobs, processes=args.processes,
                              latency_s=0.0)  # fmt: skip
            server_info = await redis.info("server")
    slots = args.processes * limited.worker_concurrency
    physical = max(args.jobs / limited.rate_limit_max, args.jobs * args.latency / slots)
    physical += args.latency
    line = {
        "bench": "pipeline", "rate_limit": limited.rate_limit_max, "slots": slots,
        "limited": a, "physical_limit_s": round(physical, 2),
        "drain_vs_physical_limit": round(a["drain_s"] / physical, 3),
        "unlimited": b,
        "image": f"{limited.ai_image_width}x{limited.ai_image_height} PNG",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}, Redis {server_info['redis_version']}",
    }  # fmt: skip
    print(json.dumps(line))


if __name__ == "__main__":
    asyncio.run(main())
