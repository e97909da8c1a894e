"""A primary killed under load, for any highly available Redis: the API and two worker
processes on ``url``, clients posting all along; afterwards no accepted job is lost, no
worker died, the API answered only 201 or 503, and no log has a traceback."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings
from tests.support.api import ApiServer
from tests.support.clients import KEY, Clients
from tests.support.procs import WorkerProcess, wait_until, worker_env
from tests.support.stub import StubServer

KillPrimary = Callable[[JobLedger], Callable[[], Awaitable[bool]]]
"""Kills the primary that serves the ledger's queue; returns a check that is true once a
replica has taken its place."""


async def failover_under_load(
    url: str, queue_name: str, stub_ai: StubServer, tmp_path: Path,
    workers: list[WorkerProcess], kill_primary: KillPrimary,
) -> None:  # fmt: skip
    settings = Settings(
        redis_url=url, queue_name=queue_name, rate_limit_max=0, lease_ms=15_000,
        redis_retry_ms=100, worker_concurrency=3, ai_generation_api_url=f"{stub_ai.url}/generate",
        database_url=f"sqlite:///{tmp_path}/db.sqlite", assets_dir=str(tmp_path / "assets"),
    )  # fmt: skip
    stub_ai.configure(latency_min_s=0.3, latency_max_s=0.6, time_scale=1.0)
    env = worker_env(settings, api_dev_key=KEY)
    api = ApiServer(env, tmp_path / "api.log").start()
    worker = WorkerProcess(env, processes=2, log_dir=tmp_path / "logs").start()
    workers.append(worker)
    redis = command_client(url)
    ledger = JobLedger(redis, settings)
    clients = Clients(api.url)
    try:

        async def running() -> bool:
            return (await ledger.stats()).active >= 3

        clients.start(per_s=10)
        await wait_until(running, 30, "jobs running")
        killed_at = time.monotonic()
        promoted = kill_primary(ledger)
        await wait_until(promoted, 30, "a replica to take over")
        await wait_until(lambda: clients.accepted_since(killed_at, 10), 30, "201s again")
        await clients.pause()

        async def all_done() -> bool:
            stats = await ledger.stats()
            return stats.completed >= len(clients.accepted) and stats.active == 0

        await wait_until(all_done, 60, "every accepted job to complete")
        jobs = [await ledger.get_job(job_id) for job_id in clients.accepted]
        assert [j.id for j in jobs if j.state != JobState.COMPLETED] == []
        assert set(clients.statuses) <= {201, 503}, clients.statuses
        assert worker.proc is not None
        assert worker.proc.poll() is None
    finally:
        await clients.close()
        await redis.aclose()
        worker.stop()
        api.stop()
    for log in [*(tmp_path / "logs").glob("*.log"), tmp_path / "api.log"]:
        assert "Traceback" not in log.read_text(errors="replace"), log
