"""What a real worker's log says when things go wrong: a lost lease, a Redis outage."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import pytest
from redis.asyncio import Redis

from imagequeue_common.embedded_redis import EmbeddedRedis
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings, replace
from imagequeue_worker.app import build_broker
from tests.integration.test_workers import kick, run_workers, wait_stats
from tests.support.procs import WorkerProcess, wait_until
from tests.support.tasks import RECORD, STEPS, register_test_tasks


def worker_log(log_dir: Path) -> str:
    [log_file] = log_dir.glob("worker-*.log")
    return log_file.read_text(errors="replace")


async def test_a_run_whose_lease_was_lost_promises_no_retry(
    broker: EngineBroker,
    redis: Redis,
    settings: Settings,
    workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:
    settings = replace(settings, lease_ms=600, worker_concurrency=1)
    [worker] = await run_workers(workers, redis, settings, log_dir=tmp_path)
    job_id = await kick(broker, STEPS, steps=40, step_ms=50)

    async def started() -> bool:
        return (await broker.ledger.get_job(job_id)).progress >= 1

    await wait_until(started, 20, "the job to make progress")
    assert worker.proc is not None
    # Frozen past its lease (a stop-the-world pause): recovery takes the job back.
    os.killpg(worker.proc.pid, signal.SIGSTOP)
    try:

        async def recovered() -> bool:
            requeued, _ = await broker.ledger.recover_stalled()
            return job_id in requeued

        await wait_until(recovered, 10, "recovery to take the job back", poll_s=0.05)
    finally:
        os.killpg(worker.proc.pid, signal.SIGCONT)
    await wait_stats(broker, 30, completed=1)  # run again (by the same worker) to the end
    worker.stop()
    text = worker_log(tmp_path)
    assert (
        f"✗ Job {job_id} failed after 1 attempts here, but its lease had been lost: nothing "
        "recorded, the job is in the hands of whoever holds it now"
    ) in text
    assert f"✗ Job {job_id} failed after 1 attempts: " not in text  # no retry promised
    assert "was not recorded" not in text  # said once, not again by the finisher


@pytest.mark.slow
async def test_a_redis_outage_is_one_line_per_loop_and_loses_no_job(
    tmp_path: Path, queue_name: str, workers: list[WorkerProcess]
) -> None:
    server = EmbeddedRedis(tmp_path / "redis", persistent=True)  # a port of its own, kept
    url = server.start()
    settings = Settings(
        redis_url=url, queue_name=queue_name, rate_limit_max=0, backoff_delay_ms=50,
        lease_ms=1500, redis_retry_ms=100, worker_concurrency=5,
    )  # fmt: skip
    try:
        client = await started_broker(settings)
        await run_workers(workers, client.ledger.client, settings, log_dir=tmp_path / "logs")
        ids = [await kick(client, RECORD, sleep_ms=200) for _ in range(30)]
        await wait_stats(client, 20, active=5)
        await client.shutdown()
        server.stop()  # SIGTERM: Redis writes its append-only file, as in a restart
        await asyncio.sleep(2)  # the outage itself (nothing to wait for: Redis is gone)
        server = EmbeddedRedis(tmp_path / "redis", persistent=True, port=server.port)
        server.start()
        client = await started_broker(settings)
        await wait_stats(client, 30, completed=len(ids), active=0)
        await client.shutdown()
        assert workers[0].proc is not None
        assert workers[0].proc.poll() is None  # the worker lived through it
        workers[0].stop()
    finally:
        server.stop()
    text = worker_log(tmp_path / "logs")
    assert "Traceback" not in text
    down = re.findall(r"\] (\w+): Redis unreachable \(", text)
    up = re.findall(r"\] (\w+): Redis reachable again after [\d.]+ s", text)
    assert down, text[-3000:]
    assert sorted(down) == sorted(set(down)), down  # one line per loop, not one per try
    assert set(down) <= {"claim", "heartbeat", "finisher"}
    assert sorted(up) == sorted(down), (up, down)
    # A run cut by the outage says so in one line, without a traceback: at most one per slot,
    # plus one per slot for a pooled connection found dead just after the restart.
    assert text.count("ConnectionError") - len(down) <= 2 * settings.worker_concurrency


async def started_broker(settings: Settings) -> EngineBroker:
    broker = build_broker(settings)
    register_test_tasks(broker)
    await broker.startup()
    return broker
