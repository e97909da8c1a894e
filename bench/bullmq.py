"""BullMQ's round in ``bench-engine``: the same no-op jobs, enqueued by as many concurrent
single adds as ours, drained by the same shape of workers (``--processes`` x ``--slots``),
measured the same way (``drain_rate``: the 10-90 % window, CPU of Redis and the workers)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

from redis.asyncio import Redis

from bench.drain import drain_rate, used_memory
from bench.peers import PEERS, ensure_installed
from bench.procs import stop

LANES = 64  # concurrent senders, as kick_all's
COMPLETED = "peer:noop:completed"


class NodeWorkers:
    """``node engine.js work P S`` in its own process group."""

    def __init__(self, node: str, url: str, processes: int, slots: int) -> None:
        self.proc = subprocess.Popen(
            [node, str(PEERS / "engine.js"), "work", str(processes), str(slots)],
            env={**os.environ, "REDIS_URL": url}, start_new_session=True,
        )  # fmt: skip
        self.pid = self.proc.pid

    def stop(self) -> None:
        stop(self.proc, group=True, timeout_s=30)


async def delete_queue(redis: Redis) -> None:
    """Every key of the peer's queue."""
    keys = [k async for k in redis.scan_iter(match="peer:noop:*", count=1000)]
    for i in range(0, len(keys), 500):
        await redis.delete(*keys[i : i + 500])


async def round_bullmq(
    url: str,
    jobs: int,
    redis: Redis,
    redis_pid: int,
    *,
    shape: tuple[int, int],
    payload_bytes: int,
) -> dict[str, float]:
    """One round of BullMQ: enqueue (rate, bytes per waiting job), then drain. Each job
    carries ``payload_bytes`` of data: our message's size, so memory compares fairly."""
    node = ensure_installed()
    await delete_queue(redis)
    base = await used_memory(redis)
    adder = await asyncio.create_subprocess_exec(
        node, str(PEERS / "engine.js"), "enqueue", str(jobs), str(LANES), str(payload_bytes),
        env={**os.environ, "REDIS_URL": url}, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(adder.communicate(), 600)
    if adder.returncode != 0:
        raise RuntimeError(f"the BullMQ enqueue failed (status {adder.returncode})")
    enqueue_rate = float(json.loads(out.decode().strip().splitlines()[-1])["enqueue_per_s"])
    waiting_bytes = (await used_memory(redis) - base) / jobs

    async def done() -> int:
        return int(await redis.zcard(COMPLETED))

    workers = NodeWorkers(node, url, *shape)
    try:
        rate, cpu = await drain_rate(done, jobs, 600, [redis_pid, workers.pid])
    finally:
        workers.stop()
    await delete_queue(redis)
    return {"bullmq_enqueue_per_s": enqueue_rate, "bullmq_process_per_s": rate,
            "bullmq_cpu_us_per_job": cpu,
            "bullmq_redis_bytes_per_waiting_job": waiting_bytes}  # fmt: skip


def bullmq_version() -> str:
    package = Path(PEERS / "node_modules" / "bullmq" / "package.json")
    version: str = json.loads(package.read_text())["version"] if package.exists() else "?"
    return version
