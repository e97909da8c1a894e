"""The job ledger: every state change of every job, each one atomic in a Lua script.

The ledger is what both the api and the worker use. Here: the path of a job through the
engine — enqueue, claim, renew, finish, recover, release, progress, permits. Beside it,
one class per role: the reads (``queue.reads``: counts, one job, throughput, live workers)
and the operator's actions (``queue.control``: cancel, retry dead letters, clean, pause).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Literal

import msgspec
from redis.asyncio import Redis

from imagequeue_common.contracts import JobState, Priority
from imagequeue_common.errors import (
    DuplicateJobError,
    InvalidJobError,
    QueueFullError,
    UserQuotaError,
)
from imagequeue_common.queue.control import LedgerControl
from imagequeue_common.queue.jobs import Claimed, ClaimResult, EnqueueRefusal, RunStatus
from imagequeue_common.queue.reads import LedgerReads

FinishKind = Literal["completed", "retry", "failed", "cancelled"]
_BATCH = 500


class FinishOp(msgspec.Struct, frozen=True):
    """How one leased run ended. ``value``: result JSON, or the retry delay in ms;
    ``error`` what users may see, ``detail`` where it was raised (and a dead letter's
    traceback), for operators."""

    job_id: str
    token: str
    kind: FinishKind
    value: str = ""
    error: str = ""
    detail: str = ""


def _op_args(ops: Sequence[FinishOp]) -> list[str | int]:
    args: list[str | int] = [len(ops)]
    for op in ops:
        args += [op.job_id, op.token, op.kind, op.value, op.error, op.detail]
    return args


class Enqueued(msgspec.Struct, frozen=True):
    """A job just added: its state and, while waiting, how many jobs are ahead of it."""

    job_id: str
    state: JobState
    position: int | None
    active: int | None = None
    """Jobs running when it was added (read in the same atomic call)."""
    priority: Priority = Priority.NORMAL
    duplicate: bool = False
    """The job was already queued under the same de-duplication key: this is that job."""
    distance: int = 0
    """How far its tag is ahead of the virtual time (``reads.Place.distance``)."""


class JobLedger(LedgerReads, LedgerControl):
    """Operations on one queue's jobs in Redis: the worker's path here, the reads
    (:class:`LedgerReads`) and operator actions (:class:`LedgerControl`) beside it."""

    async def enqueue(
        self,
        job_id: str,
        task_name: str,
        payload: str,
        *,
        priority: Priority = Priority.NORMAL,
        user_id: str = "",
        delay_ms: int = 0,
        max_attempts: int | None = None,
        user_quota: int = 0,
        ref: str = "",
        replace_finished: bool = False,
        rate_limited: bool = True,
        start_deadline_ms: int = 0,
        dedup_key: str = "",
        max_queued: int = 0,
        hooks: str = "",
    ) -> Enqueued:
        """Add a job; raises :class:`DuplicateJobError` if the id exists (with
        ``replace_finished``: unless its job has finished, which then starts afresh) and
        :class:`UserQuotaError` when ``user_id`` already has ``user_quota`` unfinished jobs
        (0: no quota); nothing changes in either case. ``user_id`` and ``ref`` (what the job
        is for) are indexed for search. A job that is not ``rate_limited`` starts without
        counting against ``RATE_LIMIT_MAX``. One not started within ``start_deadline_ms``
        (0: no deadline) expires. While a job of ``dedup_key`` is unfinished, the answer is
        that job (``duplicate``) and nothing is added. :class:`QueueFullError` when
        ``max_queued`` jobs (0: any number) wait or are delayed. ``hooks``: the letters of
        the events that also go to the outbox for its webhook (``webhooks``). The answer
        carries the job's place in the queue, read in the same atomic call."""
        if delay_ms < 0 or start_deadline_ms < 0:
            raise InvalidJobError("delay and deadline must not be negative")
        attempts = self.settings.job_retries + 1 if max_attempts is None else max_attempts
        if attempts < 1:
            raise InvalidJobError(f"max attempts must be at least 1, got {attempts}")
        k = self.keys
        reply = await self._scripts.call_coalesced(
            "enqueue",
            [k.waiting, k.delayed, k.events, k.marker, k.meta, k.users, k.active,
             k.completed, k.failed, k.cancelled],
            [k.prefix, job_id, task_name, payload, priority.value, user_id,
             delay_ms, attempts, self._maxlen, user_quota, ref, secrets.token_hex(8),
             "1" if replace_finished else "0", "1" if rate_limited else "0",
             self.settings.fairness, start_deadline_ms, dedup_key, max_queued, hooks],
        )  # fmt: skip
        if reply == EnqueueRefusal.EXISTS:
            raise DuplicateJobError(job_id)
        if reply == EnqueueRefusal.OVER_QUOTA:
            raise UserQuotaError(user_id, user_quota)
        if reply == EnqueueRefusal.QUEUE_FULL:
            raise QueueFullError(max_queued)
        state, rank, active, found, distance = reply
        position = None if rank < 0 else int(rank)
        return Enqueued(str(found), JobState(state), position, int(active), priority,
                        str(found) != job_id, int(distance))  # fmt: skip

    async def claim(
        self, worker_id: str, want: int, finished: Sequence[FinishOp] = ()
    ) -> ClaimResult:
        """Lease up to ``want`` of the best waiting jobs, within the global rate limit.

        ``finished`` runs are ended first, in the same atomic call (see :meth:`finish`).
        """
        k, s = self.keys, self.settings
        reply = await self._scripts.call(
            "claim",
            [k.waiting, k.delayed, k.active, k.limiter, k.events, k.meta, k.marker, k.metrics,
             k.completed, k.failed, k.cancelled, k.users],
            [k.prefix, s.lease_ms, s.rate_limit_max, s.rate_limit_duration_ms, worker_id, want,
             self._maxlen, s.user_max_active, s.fairness, *_op_args(finished)],
        )  # fmt: skip
        jobs = [
            Claimed(reply[i], reply[i + 1], str(reply[i + 2]), int(reply[i + 3]), int(reply[i + 4]))
            for i in range(3, len(reply), 5)
        ]
        applied = [flag == "1" for flag in reply[2]]
        return ClaimResult(status=reply[0], wait_ms=int(reply[1]), jobs=jobs, applied=applied)

    async def wait_for_work(self, blocking: Redis, timeout_ms: int) -> bool:
        """Block until a wake-up token arrives or ``timeout_ms`` passes; True if woken."""
        timeout_s = max(timeout_ms, 1) / 1000
        return await blocking.blpop([self.keys.marker], timeout=timeout_s) is not None

    async def finish(self, ops: Sequence[FinishOp]) -> list[bool]:
        """End a batch of runs atomically; False where the lease had been lost."""
        if not ops:
            return []
        k = self.keys
        flags: str = await self._scripts.call(
            "finish",
            [k.active, k.completed, k.failed, k.delayed, k.cancelled, k.events, k.metrics,
             k.marker, k.users, k.waiting],
            [k.prefix, self._maxlen, self.settings.user_max_active, *_op_args(ops)],
        )  # fmt: skip
        return [flag == "1" for flag in flags]

    async def extend(
        self, worker_id: str, info: str, leases: list[tuple[str, str]]
    ) -> tuple[list[str], list[str]]:
        """Renew leases and record the worker; returns (lost ids, cancel-requested ids)."""
        k = self.keys
        args: list[str | int] = [k.prefix, self.settings.lease_ms, worker_id, info]
        for job_id, token in leases:
            args += [job_id, token]
        lost, cancel = await self._scripts.call(
            "extend", [k.active, k.workers, k.worker(worker_id)], args
        )
        return list(lost), list(cancel)

    async def recover_stalled(self) -> tuple[list[str], list[str]]:
        """Requeue jobs whose lease expired; returns (requeued ids, dead-lettered ids)."""
        k = self.keys
        requeued, dead = await self._scripts.call(
            "recover",
            [k.active, k.waiting, k.failed, k.events, k.marker, k.metrics, k.users],
            [
                k.prefix,
                self.settings.stall_limit,
                self._maxlen,
                _BATCH,
                self.settings.user_max_active,
            ],
        )
        return list(requeued), list(dead)

    async def release(self, leases: list[tuple[str, str]]) -> int:
        """Give back leased jobs that will not be finished here; returns how many."""
        if not leases:
            return 0
        k = self.keys
        args: list[str | int] = [k.prefix, self._maxlen, self.settings.user_max_active]
        for job_id, token in leases:
            args += [job_id, token]
        released: int = await self._scripts.call(
            "release", [k.active, k.waiting, k.events, k.marker], args
        )
        return released

    async def progress(self, job_id: str, token: str, percent: int, message: str = "") -> RunStatus:
        """Record progress; whether the run goes on, was asked to stop, or lost its lease."""
        if not 0 <= percent <= 100:
            raise InvalidJobError(f"progress must be from 0 to 100, got {percent}")
        k = self.keys
        answer = await self._scripts.call(
            "progress", [k.events], [k.prefix, self._maxlen, job_id, token, percent, message]
        )
        return RunStatus(int(answer))

    async def upstream_permit(self, job_id: str, token: str, local_lag_ms: int = 0) -> int:
        """0 when a job may send its AI request now, else the ms to wait (limit or hold).
        ``local_lag_ms``: how late the caller may be to send it (its loop's recent delay);
        with ``RATE_LIMIT_GUARD_MS`` it is the request's slack, which holds back the
        permits after this one (``permit.lua``)."""
        if local_lag_ms < 0:
            raise InvalidJobError(f"local lag must not be negative, got {local_lag_ms} ms")
        s, k = self.settings, self.keys
        slack = s.rate_limit_guard_ms + local_lag_ms
        wait: int = await self._scripts.call(
            "permit",
            [k.upstream, k.meta, k.metrics],
            [s.rate_limit_max, s.rate_limit_duration_ms, f"{job_id}:{token}", slack],
        )
        return wait

    async def run_status(self, job_id: str, token: str) -> RunStatus:
        """Like :meth:`progress`, without writing."""
        state, held, cancel = await self.client.hmget(
            self.keys.job(job_id), ["state", "token", "cancel"]
        )
        if state != "active" or held != token:
            return RunStatus.LEASE_LOST
        return RunStatus.CANCEL_REQUESTED if cancel == "1" else RunStatus.GO_ON

    async def count_upstream(self, outcome: str) -> None:
        """Count one AI request's outcome (an HTTP status, ``timeout``, ``connection``, ...)."""
        await self.client.hincrby(self.keys.upstream_status, outcome, 1)

    async def replace_payload(self, job_id: str, payload: str) -> None:
        """The message a job's next run gets (only for a job leased by the caller: a run
        that sends its own job again)."""
        await self.client.set(self.keys.data(job_id), payload, xx=True)

    async def deregister(self, worker_id: str) -> None:
        """Forget a worker that is stopping, so its slots leave the live count at once."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zrem(self.keys.workers, worker_id)
            pipe.delete(self.keys.worker(worker_id))
            await pipe.execute()

    async def hold(self, hold_ms: int) -> int:
        """Stop all claims for ``hold_ms`` (an upstream 429); returns the hold's end (ms)."""
        if hold_ms < 0:
            raise InvalidJobError(f"hold must not be negative, got {hold_ms} ms")
        until: int = await self._scripts.call("hold", [self.keys.meta], [hold_ms])
        return until
