"""Batches the ends of runs into one ``finish`` script call.

A run's end is handed over without waiting for Redis, so its slot frees at once; one
flusher sends whatever has piled up while the previous call was in flight. When the
worker dies before a flush, the job's lease expires and it runs again (at least once).
"""

from __future__ import annotations

import asyncio
import logging

from imagequeue_common.queue.ledger import FinishOp, JobLedger

log = logging.getLogger("imagequeue.engine")


class Finisher:
    """Owns the flusher task; :meth:`close` flushes what is left."""

    def __init__(self, ledger: JobLedger) -> None:
        self._ledger = ledger
        self._pending: list[FinishOp] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the flusher task."""
        self._task = asyncio.create_task(self._run(), name="imagequeue-finisher")
        self._task.add_done_callback(_log_death)

    def submit(self, op: FinishOp) -> None:
        """Queue one run's end; it is written within one Redis round trip."""
        self._pending.append(op)
        self._idle.clear()
        self._wake.set()

    async def drain(self) -> None:
        """Wait until every submitted end is written."""
        await self._idle.wait()

    async def close(self) -> None:
        """Flush what is pending, then stop (idempotent).

        The flusher is asked to stop rather than cancelled: cancelling a Redis call midway
        can leave its connection stuck, and the batch in flight must land anyway.
        """
        task, self._task = self._task, None
        if task is not None:
            self._closing = True
            self._wake.set()
            await task
        await self._flush()

    async def _run(self) -> None:
        while not (self._closing and not self._pending):
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._flush()
            except Exception:
                if self._closing:
                    raise
                log.exception("writing finished jobs failed; retrying in 1 s")
                await asyncio.sleep(1)
                self._wake.set()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            try:
                applied = await self._ledger.finish(batch)
            except BaseException:
                self._pending[:0] = batch  # keep them for the next try
                raise
            for op, ok in zip(batch, applied, strict=True):
                if not ok:
                    log.warning(
                        "job %s finished here after its lease was lost; its end was not recorded",
                        op.job_id,
                    )
        if not self._pending:
            self._idle.set()


def _log_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s died", task.get_name(), exc_info=task.exception())
