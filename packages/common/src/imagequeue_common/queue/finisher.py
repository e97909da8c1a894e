"""Records the ends of runs, batched, mostly for free on the next claim.

A run's end is handed over without waiting for Redis, so its slot frees at once. The
freed slot's claim carries the ends pending by then in the same script call; what no
claim takes within ``FLUSH_DELAY_S`` (a worker that is rate-limited, paused or busy) is
written by the flusher. When the worker dies before either, the job's lease expires and it
runs again: at least once, never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from imagequeue_common.outage import RedisOutage
from imagequeue_common.queue.ledger import FinishOp, JobLedger

log = logging.getLogger("imagequeue.engine")

FLUSH_DELAY_S = 0.005


class Finisher:
    """Pending ends of runs; owns the fallback flusher task."""

    def __init__(self, ledger: JobLedger, *, retry_s: float = 1.0) -> None:
        self._ledger = ledger
        self._outage = RedisOutage("finisher", log, retry_s=retry_s)
        self._pending: list[FinishOp] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._armed: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the flusher task."""
        self._task = asyncio.create_task(self._run(), name="imagequeue-finisher")
        self._task.add_done_callback(log_death)

    def submit(self, op: FinishOp) -> None:
        """Queue one run's end; the flusher looks at it after ``FLUSH_DELAY_S``."""
        self._pending.append(op)
        if self._armed is None:
            self._armed = asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self._fire)

    def _fire(self) -> None:
        self._armed = None
        if self._pending:
            self._wake.set()

    def written_elsewhere(self) -> None:
        """A claim wrote the ends it took: Redis answers (ends an outage this noted)."""
        self._outage.answered()

    def take(self) -> list[FinishOp]:
        """Hand the pending ends to a caller that writes them (a claim)."""
        batch, self._pending = self._pending, []
        return batch

    def put_back(self, batch: Sequence[FinishOp]) -> None:
        """Return ends whose write failed; they go out with the next call."""
        self._pending[:0] = batch
        self._wake.set()

    async def close(self) -> None:
        """Write what is pending, then stop (idempotent).

        The flusher is asked to stop rather than cancelled: cancelling a Redis call midway
        can leave its connection stuck, and the batch in flight must land anyway.
        """
        task, self._task = self._task, None
        if self._armed is not None:
            self._armed.cancel()
            self._armed = None
        if task is not None:
            self._closing = True
            self._wake.set()
            await task
        await self._flush()

    async def _run(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            batch = self.take()
            if not batch:
                continue  # a claim took them; no Redis call, so no news of an outage
            try:
                with self._outage:
                    await self._send(batch)
            except Exception:
                if self._closing:
                    raise
                retry_s = self._outage.retry_s
                log.exception("writing finished jobs failed; retrying in %.1f s", retry_s)
                await asyncio.sleep(retry_s)
                continue
            if self._outage.failed_last and not self._closing:
                await asyncio.sleep(self._outage.retry_s)

    async def _flush(self) -> None:
        batch = self.take()
        if batch:  # else a claim took them (which, if it failed, gives them back)
            await self._send(batch)

    async def _send(self, batch: list[FinishOp]) -> None:
        try:
            applied = await self._ledger.finish(batch)
        except BaseException:
            self.put_back(batch)
            raise
        report(batch, applied)


def report(batch: Sequence[FinishOp], applied: Sequence[bool]) -> None:
    """Log the ends that were not recorded because the lease had been lost meanwhile (a
    loss the run knew of is logged by ``log_outcome``, and its end is never sent)."""
    for op, ok in zip(batch, applied, strict=True):
        if not ok:
            log.warning(
                "✗ Job %s: the end of its run here (%s) was not recorded: its lease had been "
                "lost meanwhile, the job is in the hands of whoever holds it now",
                op.job_id, _PLANNED.get(op.kind, op.kind),
                extra={"job_id": op.job_id, "outcome": "lease_lost"},
            )  # fmt: skip


_PLANNED = {"retry": "a retry", "failed": "the dead-letter queue"}


def log_death(task: asyncio.Task[None]) -> None:
    """A done-callback for a long-lived task: an exception it died of is logged."""
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s died", task.get_name(), exc_info=task.exception())
