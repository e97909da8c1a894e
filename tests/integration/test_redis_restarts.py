"""Redis stopped and restarted under a running stack: no worker dies, no job is lost or run
twice, the API answers 201 or 503 and nothing else.

A real API, one worker command with two worker processes, the stub AI and a private Redis
with its append-only file on; clients post characters all along. Redis goes away by
``SHUTDOWN`` (it writes its file first) or by SIGKILL (a crash: what it wrote before each
reply is in the file, the machine keeps running), with jobs running or with every worker
idle in its blocking wait, for ``OUTAGE_S``, shorter than the lease; then it starts again
on the same port from its file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import JobState
from imagequeue_common.embedded_redis import EmbeddedRedis
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings
from tests.support.api import ApiServer
from tests.support.clients import KEY, Clients
from tests.support.procs import WorkerProcess, wait_until, worker_env
from tests.support.stub import StubServer

pytestmark = pytest.mark.slow
OUTAGE_S = float(os.environ.get("IQ_RESTART_OUTAGE_S", "2"))
"""How long Redis stays away (the lease is three times as long); ``just chaos-restart``
runs the operator's case: 10 s, the default lease of 30 s, then 90 s of watching."""
WATCH_S = float(os.environ.get("IQ_RESTART_WATCH_S", "0"))
"""How long the clients go on posting after Redis is back (the crash this test was
written for came about 60 s after the restart)."""


async def live_pids(ledger: JobLedger) -> set[int]:
    return {w.pid for w in await ledger.live_workers()}


class Stack:
    """A private Redis with its file, the API, two worker processes and the stub."""

    def __init__(self, tmp: Path, queue: str, stub: StubServer, workers: list[WorkerProcess]):
        self.tmp = tmp
        self.server = EmbeddedRedis(tmp / "redis", persistent=True)
        self.url = self.server.start()
        self.settings = Settings(
            redis_url=self.url, queue_name=queue, rate_limit_max=0,
            lease_ms=int(OUTAGE_S * 3000), redis_retry_ms=100, worker_concurrency=3,
            ai_generation_api_url=f"{stub.url}/generate",
            database_url=f"sqlite:///{tmp}/db.sqlite", assets_dir=str(tmp / "assets"),
        )  # fmt: skip
        stub.configure(latency_min_s=0.4, latency_max_s=0.8, time_scale=1.0)
        env = worker_env(self.settings, api_dev_key=KEY)
        self.api = ApiServer(env, tmp / "api.log").start()
        self.worker = WorkerProcess(env, processes=2, log_dir=tmp / "logs").start()
        workers.append(self.worker)
        self._connect()

    def _connect(self) -> None:
        self.redis = Redis.from_url(self.url, decode_responses=True)
        self.ledger = JobLedger(self.redis, self.settings)

    async def redis_away(self, how: str) -> None:
        """Redis goes (``SHUTDOWN`` or SIGKILL), stays away ``OUTAGE_S``, and comes back
        on its port from its file."""
        await self.redis.aclose()
        if how == "shutdown":
            async with Redis.from_url(self.url) as client:
                with contextlib.suppress(Exception):  # the server closes the connection
                    await client.shutdown()
            await wait_until(self._exited, 10, "Redis to exit")
            self.server.stop()  # reaps it
        else:
            self.server.kill()
        await asyncio.sleep(OUTAGE_S)  # the outage itself: nothing to wait for, Redis is gone
        self.server = EmbeddedRedis(self.tmp / "redis", persistent=True, port=self.server.port)
        self.server.start()
        self._connect()

    async def _exited(self) -> bool:
        process = self.server._process
        return process is None or process.poll() is not None

    async def wait_idle(self, accepted: int) -> None:
        async def idle() -> bool:
            stats = await self.ledger.stats()
            return stats.completed >= accepted and stats.active == 0

        try:
            await wait_until(idle, 60, f"{accepted} jobs completed and nothing running")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {await self.ledger.stats()}") from None

    async def stop(self) -> None:
        await self.redis.aclose()
        self.worker.stop()
        self.api.stop()
        self.server.stop()
        for log in [*(self.tmp / "logs").glob("*.log"), self.tmp / "api.log"]:
            assert "Traceback" not in log.read_text(errors="replace"), log


@pytest.mark.parametrize("load", ["busy", "idle"])
@pytest.mark.parametrize("how", ["shutdown", "sigkill"])
async def test_a_redis_restart_kills_no_worker_and_loses_no_job(
    how: str, load: str, tmp_path: Path, queue_name: str, stub_ai: StubServer,
    workers: list[WorkerProcess],
) -> None:  # fmt: skip
    stack = Stack(tmp_path, queue_name, stub_ai, workers)
    clients = Clients(stack.api.url)
    try:
        await wait_until(lambda: _pids(stack, 2), 30, "two worker processes")
        pids = await live_pids(stack.ledger)
        clients.start()
        if load == "busy":
            await wait_until(lambda: _running(stack, 3), 20, "jobs running")
        else:  # every worker waiting for work when Redis goes
            await wait_until(lambda: _accepted(clients, 3), 20, "three characters")
            await clients.pause()
            await stack.wait_idle(len(clients.accepted))
        await stack.redis_away(how)
        back = len(clients.statuses) + 1  # the request in flight may have been sent before
        clients.start()
        await wait_until(lambda: _answered(clients, back + 10), 30, "answers after it")
        watch_until = time.monotonic() + WATCH_S
        await wait_until(lambda: _past(watch_until), WATCH_S + 10, "the watch to end")
        await clients.pause()
        await stack.wait_idle(len(clients.accepted))

        jobs = [await stack.ledger.get_job(job_id) for job_id in clients.accepted]
        assert {j.state for j in jobs} == {JobState.COMPLETED}
        assert [j.id for j in jobs if j.attempts != 1] == []  # no run cut and run again
        assert stub_ai.stats()["submissions"] == len(jobs)  # each job sent upstream once
        stats = await stack.ledger.stats()
        assert (stats.waiting, stats.failed, stats.delayed) == (0, 0, 0)
        assert set(clients.statuses) <= {201, 503}, clients.statuses
        if load == "busy":
            assert 503 in clients.statuses[:back]  # the clients did meet the outage
        # Redis back: no request meets a dead pooled connection (retried on a fresh one).
        assert set(clients.statuses[back:]) == {201}, clients.statuses
        assert stack.worker.proc is not None
        assert stack.worker.proc.poll() is None
        assert await live_pids(stack.ledger) == pids  # no process exited or was restarted
    finally:
        await clients.close()
        await stack.stop()


async def _pids(stack: Stack, n: int) -> bool:
    return len(await live_pids(stack.ledger)) == n


async def _running(stack: Stack, n: int) -> bool:
    return (await stack.ledger.stats()).active >= n


async def _past(moment: float) -> bool:
    return time.monotonic() >= moment


async def _answered(clients: Clients, n: int) -> bool:
    return len(clients.statuses) >= n


async def _accepted(clients: Clients, n: int) -> bool:
    return len(clients.accepted) >= n
