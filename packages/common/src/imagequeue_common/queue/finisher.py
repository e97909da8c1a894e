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

from imagequeue_common.queue.ledger import FinishOp, JobLedger

log = logging.getLogger("imagequeue.engine")

FLUSH_DELAY_S = 0.005


class Finisher:
    """Pending ends of runs; owns the fallback flusher task."""

    def __init__(self, ledger: JobLedger) -> None:
        self._ledger = ledger
        self._pending: list[FinishOp] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._armed: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the flusher task."""
        self._task = asyncio.create_task(self._run(), name="imagequeue-finisher")
        self._task.add_done_callback(_log_death)

    def submit(self, op: FinishOp) -> None:
        """Queue one run's end; the flusher looks at it after ``FLUSH_DELAY_S``."""
        self._pending.append(op)
        if self._armed is None:
            self._armed = asyncio.get_running_loop().call_later(FLUSH_DELAY_S, self._fire)

    def _fire(self) -> None:
        self._armed = None
        if self._pending:
            self._wake.set()

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
            try:
                await self._flush()
            except Exception:
                if self._closing:
                    raise
                log.exception("writing finished jobs failed; retrying in 1 s")
                await asyncio.sleep(1)

    async def _flush(self) -> None:
        batch = self.take()
        if not batch:
            return
        try:
            applied = await self._ledger.finish(batch)
        except BaseException:
            self.put_back(batch)
            raise
        report(batch, applied)


def report(batch: Sequence[FinishOp], applied: Sequence[bool]) -> None:
    """Log the ends that were not recorded because the lease had been lost."""
    for op, ok in zip(batch, applied, strict=True):
        if not ok:
            log.warning(
                "job %s finished here after its lease was lost; its end was not recorded",
                op.job_id,
            )


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s died", task.get_name(), exc_info=task.exception())
