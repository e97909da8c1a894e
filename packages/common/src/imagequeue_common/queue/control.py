"""The ledger's operator actions: cancel, send dead letters back, clean, pause, resume."""

from __future__ import annotations

from typing import Literal

import msgspec

from imagequeue_common.errors import InvalidJobError, JobNotFoundError, JobStateError
from imagequeue_common.queue.ledger_base import LedgerBase

_BATCH = 500
_MAX_KEEP_MS = 10**12
"""About 30 years: longer retention means the same as this."""


class CleanReport(msgspec.Struct, frozen=True):
    """How many finished jobs one clean removed."""

    completed: int
    failed: int
    cancelled: int
    expired: int


class LedgerControl(LedgerBase):
    """What an operator (or the API on a user's behalf) does to jobs."""

    async def cancel(self, job_id: str) -> Literal["cancelled", "requested"]:
        """Cancel a waiting/delayed job now, or ask an active one's worker to stop it."""
        k = self.keys
        answer = await self._scripts.call(
            "cancel",
            [k.waiting, k.delayed, k.cancelled, k.events, k.metrics, k.users],
            [k.prefix, self._maxlen, job_id],
        )
        if answer == "missing":
            raise JobNotFoundError(job_id)
        if answer in ("cancelled", "requested"):
            return "cancelled" if answer == "cancelled" else "requested"
        raise JobStateError(job_id, answer, "cancel")

    async def retry_failed(self, job_id: str) -> None:
        """Move one dead-lettered job back to waiting, its attempts reset."""
        moved, refused = await self._retry_failed_call(job_id)
        if refused == "missing":
            raise JobNotFoundError(job_id)
        if moved != 1:
            raise JobStateError(job_id, refused, "retry")

    async def retry_all_failed(self) -> int:
        """Move every dead-lettered job back to waiting; returns how many."""
        total = 0
        while (moved := (await self._retry_failed_call(""))[0]) > 0:
            total += moved
        return total

    async def _retry_failed_call(self, job_id: str) -> tuple[int, str]:
        """Jobs moved, and why not ('' when moved; 'missing' or the one job's state)."""
        k = self.keys
        moved, refused = await self._scripts.call(
            "retry_failed",
            [k.failed, k.waiting, k.events, k.marker, k.meta, k.users],
            [k.prefix, self._maxlen, job_id, _BATCH, self.settings.fairness],
        )
        return int(moved), str(refused)

    async def clean(
        self, *, keep_completed_ms: int | None = None, keep_failed_ms: int | None = None
    ) -> CleanReport:
        """Delete completed, cancelled and expired jobs, and failed ones, past retention
        (settings by default)."""
        s, k = self.settings, self.keys
        keep_completed = s.keep_completed_ms if keep_completed_ms is None else keep_completed_ms
        keep_failed = s.keep_failed_ms if keep_failed_ms is None else keep_failed_ms
        if keep_completed < 0 or keep_failed < 0:
            raise InvalidJobError("retention must not be negative")
        # Retention past the epoch would make the stream trim's MINID negative.
        keep_completed, keep_failed = (
            min(keep_completed, _MAX_KEEP_MS),
            min(keep_failed, _MAX_KEEP_MS),
        )
        totals = [0, 0, 0, 0]
        while True:
            removed = await self._scripts.call(
                "clean",
                [k.completed, k.failed, k.cancelled, k.expired, k.events, k.workers],
                [k.prefix, keep_completed, keep_failed, keep_completed, _BATCH],
            )
            totals = [t + int(r) for t, r in zip(totals, removed, strict=True)]
            if max(int(r) for r in removed) < _BATCH:
                return CleanReport(*totals)

    async def pause(self) -> None:
        """Workers stop claiming; active jobs finish."""
        await self.client.hset(self.keys.meta, "paused", "1")

    async def resume(self) -> None:
        """Workers claim again (blocked ones are woken)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.meta, "paused")
            pipe.lpush(self.keys.marker, "1")
            await pipe.execute()
