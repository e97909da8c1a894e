"""Failover benchmark: the primary of a real Sentinel setup (or of a Cluster) SIGKILLed
under load.

On loopback: a primary, two replicas and three sentinels (``tests/support/sentinel.py``;
the primary is called down after 1 s) — or with ``--redis cluster`` three primaries with a
replica each (``tests/support/cluster.py``; a primary is called failed after 1 s) and the
queue's primary is the one killed — the API, two worker processes of 5 slots and the stub
AI at 1 s per image. An open-loop client posts ``POST /api/v1/characters`` at ``--rate``
(200/s) from 20 users for ``--seconds`` (20 s), and the primary is killed at the middle.
Twice, on fresh setups: with the enqueue confirmed by a replica (``REDIS_MIN_REPLICAS_ACK``
at its default: 1 with Sentinel; on a cluster 1 while the queue's primary has a replica)
and without (``0``). One JSON line; per mode:

- ``accepted`` — 201 answers; ``lost`` — of those, jobs the new primary does not have;
- ``duplicates`` — upstream calls beyond one per job that reached the stub (a run whose
  finish was lost with the old primary runs again once its lease runs out);
- ``errors_5xx`` — 5xx answers (503 while no primary answers); other failures are counted
  apart (``other_errors``: timeouts, refused connections);
- ``seconds_without_accepting`` — the longest gap between two 201 answers;
  ``seconds_without_claims`` — the longest gap between two job starts (Redis time);
- ``post_p50_ms``/``post_p99_ms`` — over every POST of the run, and ``…_before_kill`` over
  those answered before the kill (the steady cost of the replica acknowledgement).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bench.api import percentile
from bench.engine import ROOT, Workers
from bench.pipeline import Stub
from imagequeue_api.apikeys import ApiKeyStore
from imagequeue_common.embedded_redis import free_port
from imagequeue_common.errors import JobNotFoundError
from imagequeue_common.queue.jobs import Job
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings
from tests.support.cluster import ClusterSet
from tests.support.sentinel import SentinelSet

USERS = 20
STUB_S = 1.0
"""Per image: 10 slots make 10 jobs/s, so the workers leave the API its share of 2 cores
(at 40 jobs/s the image pipeline took them and a POST's median was 190-270 ms)."""


async def post_for(
    url: str, keys: list[str], rate: float, seconds: float, *, kill: Any
) -> list[tuple[float, int, float, str]]:
    """Open-loop POSTs at ``rate`` for ``seconds``, calling ``kill()`` halfway; per
    request: (answered at, status or 0 for a failure, ms, job id)."""
    out: list[tuple[float, int, float, str]] = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as http:

        async def one(n: int) -> None:
            body = {"name": f"Failover {n}", "personality": {"poseId": "pose-standing"}}
            headers = {"Authorization": f"Bearer {keys[n % len(keys)]}"}
            sent = time.monotonic()
            try:
                answer = await http.post("/api/v1/characters", json=body, headers=headers)
            except httpx.HTTPError:
                out.append((time.monotonic(), 0, (time.monotonic() - sent) * 1000, ""))
                return
            job = answer.json()["data"]["imageJob"]["id"] if answer.status_code == 201 else ""
            out.append(
                (time.monotonic(), answer.status_code, (time.monotonic() - sent) * 1000, job)
            )

        start, tasks, n, killed = time.monotonic(), [], 0, False
        while (at := n / rate) < seconds:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            if not killed and at >= seconds / 2:
                kill()
                killed = True
            tasks.append(asyncio.create_task(one(n)))
            n += 1
        await asyncio.gather(*tasks)
    return out


def longest_gap(moments: list[float]) -> float:
    """The longest time between two consecutive moments (0 with fewer than two)."""
    ordered = sorted(moments)
    return max((b - a for a, b in itertools.pairwise(ordered)), default=0.0)


async def one_mode(kind: str, acks: int, rate: float, seconds: float, tmp: Path) -> dict[str, Any]:
    """A fresh Sentinel (or Cluster) setup, the stack on it, the load with a kill; the
    figures."""
    tag = "default" if acks < 0 else str(acks)
    ha = SentinelSet(tmp / f"ha-{tag}") if kind == "sentinel" else ClusterSet(
        tmp / f"ha-{tag}", replicas=1)  # fmt: skip
    stub = Stub()
    stub.setup(STUB_S)
    port = free_port()
    queue = f"failover-{tag}-{os.getpid()}"
    env = {
        **os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": ha.url, "QUEUE_NAME": queue,
        "API_PORT": str(port), "DATABASE_URL": f"sqlite:///{tmp}/failover-{tag}.db",
        "ASSETS_DIR": f"{tmp}/assets-{tag}", "WORKER_CONCURRENCY": "5", "RATE_LIMIT_MAX": "0",
        "AI_GENERATION_API_URL": f"{stub.url}/generate", "LOG_LEVEL": "warning",
        "REDIS_MIN_REPLICAS_ACK": str(acks), "REDIS_RETRY_MS": "100", "LEASE_MS": "10000",
        "API_USER_RPS": "0", "USER_MAX_PENDING": "0",
    }  # fmt: skip
    settings = Settings(redis_url=ha.url, queue_name=queue)
    redis: Redis = command_client(ha.url)
    keys = [(await ApiKeyStore(redis, queue).create(f"user-{i}", "regular"))[0]
            for i in range(USERS)]  # fmt: skip
    log = (tmp / f"api-{tag}.log").open("wb")
    api = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "imagequeue_api", "serve", env=env, stdout=log, stderr=log, cwd=ROOT
    )
    workers = Workers(["imagequeue_worker", "run", "--processes", "2"], env)
    try:
        await _ready(f"http://127.0.0.1:{port}/readyz")
        kill_times: list[float] = []

        def kill() -> None:
            kill_times.append(time.monotonic())
            if isinstance(ha, SentinelSet):
                ha.primary.kill()
            else:
                ha.primary_of(JobLedger(redis, settings).keys.waiting).kill()

        answers = await post_for(f"http://127.0.0.1:{port}", keys, rate, seconds, kill=kill)
        killed_at = kill_times[0]
        await asyncio.sleep(15)  # the leases of runs whose finish was lost run out: reruns
        ledger = JobLedger(redis, settings)
        await _reachable(ledger)  # this client's first call after a failover may fail
        accepted = [job for _, status, _, job in answers if status == 201]
        jobs = {job_id: await _job_or_none(ledger, job_id) for job_id in accepted}
        starts = [j.started_at / 1000 for j in jobs.values() if j is not None and j.started_at]
        reached = sum(1 for j in jobs.values() if j is not None and j.started_at)
        ms = sorted(m for _, _, m, _ in answers)
        steady = sorted(m for t, _, m, _ in answers if t < killed_at)
        return {
            "accepted": len(accepted),
            "lost": sum(1 for j in jobs.values() if j is None),
            "duplicates": max(stub.stats()["submissions"] - reached, 0),
            "errors_5xx": sum(1 for _, s, _, _ in answers if s >= 500),
            "other_errors": sum(1 for _, s, _, _ in answers if s == 0 or 300 <= s < 500),
            "seconds_without_accepting": round(
                longest_gap([t for t, s, _, _ in answers if s == 201]), 2
            ),
            "seconds_without_claims": round(longest_gap(starts), 2),
            "post_p50_ms": round(percentile(ms, 0.5), 1),
            "post_p99_ms": round(percentile(ms, 0.99), 1),
            "post_p50_ms_before_kill": round(percentile(steady, 0.5), 1),
            "post_p99_ms_before_kill": round(percentile(steady, 0.99), 1),
        }
    finally:
        workers.stop()
        api.terminate()
        await api.wait()
        log.close()
        await redis.aclose()
        stub.stop()
        ha.stop()


async def _job_or_none(ledger: JobLedger, job_id: str) -> Job | None:
    try:
        return await ledger.get_job(job_id)
    except JobNotFoundError:  # not there: lost
        return None


async def _reachable(ledger: JobLedger) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await ledger.get_job("-")
        except JobNotFoundError:
            return
        except RedisError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _ready(url: str) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(url, timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    sys.exit("the API did not become ready")


async def main() -> None:
    """Both modes, one JSON line."""
    parser = argparse.ArgumentParser(prog="just bench-failover")
    parser.add_argument("--rate", type=float, default=200, help="POSTs per second (200)")
    parser.add_argument("--seconds", type=float, default=20, help="length of the load (20)")
    parser.add_argument("--redis", choices=("sentinel", "cluster"), default="sentinel",
                        help="the highly available Redis (sentinel)")  # fmt: skip
    args = parser.parse_args()
    line: dict[str, Any] = {"bench": "failover", "redis": args.redis, "rate": args.rate,
                            "seconds": args.seconds, "kill_at_s": args.seconds / 2}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for acks in (-1, 0):
            figures = await one_mode(args.redis, acks, args.rate, args.seconds, Path(tmp))
            line["replica_ack_default" if acks < 0 else "replica_ack_0"] = figures
    line["setup"] = (
        "primary + 2 replicas + 3 sentinels (down after 1 s)"
        if args.redis == "sentinel"
        else "3 primaries + 1 replica each (node timeout 1 s)"
    ) + ", API, 2 workers x 5 slots, stub 1 s"
    line["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}")  # fmt: skip
    print(json.dumps(line))


if __name__ == "__main__":
    asyncio.run(main())
