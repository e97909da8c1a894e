"""The stack on a real Sentinel setup (a primary, two replicas, three sentinels on loopback):
the engine through a ``redis+sentinel://`` URL, and a failover under load — the primary
SIGKILLed while clients post and workers run — with no accepted job lost, no worker dead,
and only 201 or 503 answered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings
from tests.integration.test_workers import kick
from tests.support.api import ApiServer
from tests.support.clients import KEY, Clients
from tests.support.procs import WorkerProcess, wait_until, worker_env
from tests.support.sentinel import SentinelSet
from tests.support.stub import StubServer
from tests.support.tasks import RECORD, register_test_tasks

pytestmark = pytest.mark.slow


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    setup = SentinelSet(tmp_path / "sentinel")
    yield setup
    setup.stop()


async def test_the_engine_runs_through_a_sentinel_url(
    sentinels: SentinelSet, queue_name: str
) -> None:
    settings = Settings(redis_url=sentinels.url, queue_name=queue_name, rate_limit_max=0)
    assert settings.replicas_ack == 1  # on by default with Sentinel
    broker = EngineBroker(settings, sentinels.url)
    register_test_tasks(broker)
    await broker.startup()
    try:
        job_id = await kick(broker, RECORD, value=7)
        assert (await broker.ledger.get_job(job_id)).state == JobState.WAITING
        # The enqueue waited for a replica: the job is there already.
        with sentinels.replicas[0].client() as replica:
            assert replica.exists(broker.ledger.keys.job(job_id))
    finally:
        await broker.shutdown()


async def test_a_failover_under_load_loses_no_accepted_job(
    sentinels: SentinelSet, queue_name: str, stub_ai: StubServer, tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:  # fmt: skip
    settings = Settings(
        redis_url=sentinels.url, queue_name=queue_name, rate_limit_max=0, lease_ms=15_000,
        redis_retry_ms=100, worker_concurrency=3, ai_generation_api_url=f"{stub_ai.url}/generate",
        database_url=f"sqlite:///{tmp_path}/db.sqlite", assets_dir=str(tmp_path / "assets"),
    )  # fmt: skip
    stub_ai.configure(latency_min_s=0.3, latency_max_s=0.6, time_scale=1.0)
    env = worker_env(settings, api_dev_key=KEY)
    api = ApiServer(env, tmp_path / "api.log").start()
    worker = WorkerProcess(env, processes=2, log_dir=tmp_path / "logs").start()
    workers.append(worker)
    redis = command_client(sentinels.url)
    ledger = JobLedger(redis, settings)
    clients = Clients(api.url)
    try:

        async def running() -> bool:
            return (await ledger.stats()).active >= 3

        clients.start(per_s=10)
        await wait_until(running, 30, "jobs running")
        old = sentinels.master_port()
        killed_at = time.monotonic()
        sentinels.primary.kill()

        async def promoted() -> bool:
            return sentinels.master_port() not in (None, old)

        await wait_until(promoted, 30, "the sentinels to promote a replica")
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
