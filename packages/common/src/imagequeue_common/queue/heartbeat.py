"""A worker's heartbeat: every third of a lease it renews the leases of its live runs,
records the worker as live, and returns the stalled jobs of dead workers to the queue.

A run that ended without an ack is no longer renewed: its lease runs out and recovery
delivers the job again, as after a worker's death (dead-lettered past ``STALL_LIMIT``) —
within a lease period and a beat of the run's end. While Redis is away the beat is tried
every ``REDIS_RETRY_MS``, and recovery waits one beat after it is back, so no worker takes
back another's running jobs before that one had its chance to renew them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

import msgspec

from imagequeue_common.outage import RedisOutage
from imagequeue_common.queue.finisher import log_death
from imagequeue_common.queue.lease import Lease
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings

log = logging.getLogger("imagequeue.engine")


class Heartbeat:
    """The heartbeat of one worker, over the leases it holds (``leases``, shared)."""

    def __init__(
        self, ledger: JobLedger, settings: Settings, worker_id: str, leases: dict[str, Lease]
    ) -> None:
        self._ledger, self._settings, self._worker_id = ledger, settings, worker_id
        self._leases = leases
        self._outage = RedisOutage("heartbeat", log, retry_s=settings.redis_retry_ms / 1000)
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Beat once now (the worker is live before it claims), then every third of a lease."""
        await self.beat()
        self._task = asyncio.create_task(self._loop(), name="imagequeue-heartbeat")
        self._task.add_done_callback(log_death)

    async def stop(self) -> None:
        """Stop after the beat in progress, if any."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        interval = self._settings.lease_ms / 3000
        while True:
            # Woken early by stop(); never cancelled in the middle of a Redis call.
            wait = self._outage.retry_s if self._outage.down else interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), wait)
            if self._stopping.is_set():
                return
            with self._outage:
                await self.beat()

    async def beat(self) -> None:
        """One beat: stop renewing unacked ended runs, renew the rest, recover stalled jobs."""
        self._stop_renewing_unacked()
        info = msgspec.json.encode(
            {"host": socket.gethostname(), "pid": os.getpid(),
             "concurrency": self._settings.worker_concurrency, "running": len(self._leases)}
        ).decode()  # fmt: skip
        held = [(lease.job_id, lease.token) for lease in self._leases.values()]
        lost, _ = await self._ledger.extend(self._worker_id, info, held)
        for job_id in lost:
            if (lease := self._leases.get(job_id)) is not None:
                lease.lost = True
            log.warning("lost the lease on job %s (it was recovered elsewhere)", job_id)
        if self._outage.down or self._just_back():
            return  # the first beats after an outage renew only
        requeued, dead = await self._ledger.recover_stalled()
        for job_id in requeued:
            log.warning("Job %s stalled - will be retried", job_id)
        for job_id in dead:
            log.error("Job %s stalled too often - moved to the dead-letter queue", job_id)

    def _stop_renewing_unacked(self) -> None:
        now = time.monotonic()
        for lease in list(self._leases.values()):
            if lease.unacked_for(0, now):
                del self._leases[lease.job_id]
                log.warning("Job %s ended without an ack - delivered again once its lease "
                            "runs out", lease.job_id,
                            extra={"job_id": lease.job_id, "attempt": lease.attempts,
                                   "outcome": "unacked"})  # fmt: skip

    def _just_back(self) -> bool:
        """Redis came back less than one beat (plus a retry) ago: other workers' leases
        may have run out while it was away, and they have not renewed yet. Their running
        jobs are not stalled; recovery waits until every live worker had its chance."""
        back = self._outage.back_at
        grace = (self._settings.lease_ms / 3 + self._settings.redis_retry_ms) / 1000
        return back is not None and time.monotonic() - back < grace
