"""``imagequeue-worker health`` and ``workers`` (the containers' healthcheck) against a real
worker process on a real Redis: unhealthy before it starts, healthy while it beats, unhealthy
again within a lease of its death, and unhealthy with the reason when Redis is away."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

from redis.asyncio import Redis

from imagequeue_common.settings import Settings
from tests.support.procs import ROOT, WorkerProcess, start_workers, wait_workers_ready, worker_env


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "imagequeue_worker", *args], cwd=ROOT,
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


async def test_health_follows_a_real_worker(
    workers: list[WorkerProcess], redis: Redis, settings: Settings
) -> None:
    env = worker_env(settings)
    before = cli(env, "health")
    assert before.returncode == 1
    assert f"no worker on {socket.gethostname()} beat within" in before.stdout
    (worker,) = start_workers(workers, settings)
    await wait_workers_ready(redis, settings, 1)
    alive = cli(env, "health")
    assert (alive.returncode, alive.stdout.strip()) == (0, "healthy")
    listed = [json.loads(line) for line in cli(env, "workers").stdout.splitlines()]
    assert [(w["host"], w["concurrency"]) for w in listed] == [
        (socket.gethostname(), settings.worker_concurrency)
    ]
    assert cli(env, "health", "--webhooks").returncode == 1  # no webhook worker runs
    worker.kill()
    deadline = time.monotonic() + settings.lease_ms / 1000 * 3
    while (after := cli(env, "health")).returncode == 0:
        assert time.monotonic() < deadline, "still healthy long after the worker died"
    assert "no worker on" in after.stdout


def test_health_says_when_redis_does_not_answer(settings: Settings) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**worker_env(settings), "REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    answer = cli(env, "health")
    assert answer.returncode == 1
    assert answer.stdout.startswith("unhealthy: Redis did not answer")
