"""The job ledger: every state change of every job, each one atomic in a Lua script.

The ledger is what both the api and the worker use: the api to enqueue, count, inspect,
cancel and retry; the worker (through the broker) to claim, renew, finish and recover.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Literal

import msgspec
from redis.asyncio import Redis

from imagequeue_common.contracts import JobState, Priority, QueueStats
from imagequeue_common.errors import (
    DuplicateJobError,
    InvalidJobError,
    JobNotFoundError,
    JobStateError,
    UserQuotaError,
)
from imagequeue_common.queue.jobs import Claimed, ClaimResult, Job
from imagequeue_common.queue.keys import QueueKeys
from imagequeue_common.queue.scripts import Scripts
from imagequeue_common.settings import Settings

FinishKind = Literal["completed", "retry", "failed", "cancelled"]
_BATCH = 500


class FinishOp(msgspec.Struct, frozen=True):
    """How one leased run ended. ``value``: result JSON, or the retry delay in ms."""

    job_id: str
    token: str
    kind: FinishKind
    value: str = ""
    error: str = ""


def _op_args(ops: Sequence[FinishOp]) -> list[str | int]:
    args: list[str | int] = [len(ops)]
    for op in ops:
        args += [op.job_id, op.token, op.kind, op.value, op.error]
    return args


class Enqueued(msgspec.Struct, frozen=True):
    """A job just added: its state and, while waiting, how many jobs are ahead of it."""

    job_id: str
    state: JobState
    position: int | None
    active: int | None = None
    """Jobs running when it was added (read in the same atomic call)."""
    priority: Priority = Priority.NORMAL


class CleanReport(msgspec.Struct, frozen=True):
    """How many finished jobs one clean removed."""

    completed: int
    failed: int
    cancelled: int


class LedgerMetrics(msgspec.Struct, frozen=True):
    """Counters since the queue was created."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    stalled: int = 0
    cancelled: int = 0
    rate_limited: int = 0
    upstream_waits: int = 0
    """AI requests that had to wait for the rate limit after their job was claimed."""
    run_ms_completed: int = 0


_MAX_KEEP_MS = 10**12
"""About 30 years: longer retention means the same as this."""


class Throughput(msgspec.Struct, frozen=True):
    """Completions over a recent window."""

    window_s: int
    completed: int
    run_ms: int
    observed_s: int = 0
    """From the start of the oldest bucket with a completion to the window's end: equal to
    ``window_s`` once the queue has been completing jobs over the whole window."""

    @property
    def per_minute(self) -> float:
        """Completed jobs per minute over the window."""
        return self.completed * 60 / self.window_s

    @property
    def mean_run_s(self) -> float | None:
        """Mean run time of the completed jobs, or None when none completed."""
        return self.run_ms / self.completed / 1000 if self.completed else None


class WorkerInfo(msgspec.Struct, frozen=True):
    """A live worker process, from its heartbeat."""

    id: str
    last_beat_ms: int
    host: str = ""
    pid: int = 0
    concurrency: int = 0
    running: int = 0


class JobLedger:
    """Operations on one queue's jobs in Redis."""

    def __init__(self, client: Redis, settings: Settings, *, namespace: str = "iq") -> None:
        self.client = client
        self.settings = settings
        self.keys = QueueKeys.for_queue(settings.queue_name, namespace)
        self._scripts = Scripts(client, settings.replicas_ack, settings.redis_replica_ack_ms)
        self._maxlen = settings.events_maxlen

    @property
    def scripts(self) -> Scripts:
        """The engine's scripts on this ledger's client (for :class:`QueueAdmin`)."""
        return self._scripts

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
    ) -> Enqueued:
        """Add a job; raises :class:`DuplicateJobError` if the id exists and
        :class:`UserQuotaError` when ``user_id`` already has ``user_quota`` unfinished jobs
        (0: no quota); nothing changes in either case. ``user_id`` and ``ref`` (what the job
        is for) are indexed for search. The answer carries the job's place in the queue,
        read in the same atomic call."""
        if delay_ms < 0:
            raise InvalidJobError(f"delay must not be negative, got {delay_ms} ms")
        attempts = self.settings.job_retries + 1 if max_attempts is None else max_attempts
        if attempts < 1:
            raise InvalidJobError(f"max attempts must be at least 1, got {attempts}")
        k = self.keys
        reply = await self._scripts.call_coalesced(
            "enqueue",
            [k.waiting, k.delayed, k.events, k.marker, k.meta, k.users, k.active],
            [k.prefix, job_id, task_name, payload, priority.value, user_id,
             delay_ms, attempts, self._maxlen, user_quota, ref, uuid.uuid4().hex[:16]],
        )  # fmt: skip
        if reply == 0:
            raise DuplicateJobError(job_id)
        if reply == -1:
            raise UserQuotaError(user_id, user_quota)
        state, rank, active = reply
        position = None if rank < 0 else int(rank)
        return Enqueued(job_id, JobState(state), position, int(active), priority)

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
             self._maxlen, *_op_args(finished)],
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
             k.marker, k.users],
            [k.prefix, self._maxlen, *_op_args(ops)],
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
            [k.prefix, self.settings.stall_limit, self._maxlen, _BATCH],
        )
        return list(requeued), list(dead)

    async def release(self, leases: list[tuple[str, str]]) -> int:
        """Give back leased jobs that will not be finished here; returns how many."""
        if not leases:
            return 0
        k = self.keys
        args: list[str | int] = [k.prefix, self._maxlen]
        for job_id, token in leases:
            args += [job_id, token]
        released: int = await self._scripts.call(
            "release", [k.active, k.waiting, k.events, k.marker], args
        )
        return released

    async def progress(self, job_id: str, token: str, percent: int, message: str = "") -> int:
        """Record progress; 1 go on, 0 cancellation requested, -1 lease lost."""
        if not 0 <= percent <= 100:
            raise InvalidJobError(f"progress must be from 0 to 100, got {percent}")
        k = self.keys
        answer: int = await self._scripts.call(
            "progress", [k.events], [k.prefix, self._maxlen, job_id, token, percent, message]
        )
        return answer

    async def upstream_permit(self, job_id: str, token: str) -> int:
        """0 when a job may send its AI request now, else the ms to wait (limit or hold)."""
        s, k = self.settings, self.keys
        window = s.rate_limit_duration_ms + s.rate_limit_guard_ms
        wait: int = await self._scripts.call(
            "permit",
            [k.upstream, k.meta, k.metrics],
            [s.rate_limit_max, window, f"{job_id}:{token}"],
        )
        return wait

    async def run_status(self, job_id: str, token: str) -> int:
        """Like :meth:`progress` without writing: 1 go on, 0 cancel requested, -1 lease lost."""
        state, held, cancel = await self.client.hmget(
            self.keys.job(job_id), ["state", "token", "cancel"]
        )
        if state != "active" or held != token:
            return -1
        return 0 if cancel == "1" else 1

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
        answer = await self._retry_failed_call(job_id)
        if answer == "missing":
            raise JobNotFoundError(job_id)
        if answer != 1:
            raise JobStateError(job_id, str(answer), "retry")

    async def retry_all_failed(self) -> int:
        """Move every dead-lettered job back to waiting; returns how many."""
        total = 0
        while moved := int(await self._retry_failed_call("")):
            total += moved
        return total

    async def _retry_failed_call(self, job_id: str) -> int | str:
        k = self.keys
        answer: int | str = await self._scripts.call(
            "retry_failed",
            [k.failed, k.waiting, k.events, k.marker, k.meta, k.users],
            [k.prefix, self._maxlen, job_id, _BATCH],
        )
        return answer

    async def clean(
        self, *, keep_completed_ms: int | None = None, keep_failed_ms: int | None = None
    ) -> CleanReport:
        """Delete completed/cancelled and failed jobs past retention (settings by default)."""
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
        totals = [0, 0, 0]
        while True:
            removed = await self._scripts.call(
                "clean",
                [k.completed, k.failed, k.cancelled, k.events, k.workers],
                [k.prefix, keep_completed, keep_failed, keep_completed, _BATCH],
            )
            totals = [t + int(r) for t, r in zip(totals, removed, strict=True)]
            if max(int(r) for r in removed) < _BATCH:
                return CleanReport(*totals)

    async def server_ms(self) -> float:
        """The server time of the queue's node, in milliseconds (what its scripts use)."""
        seconds, micros = await self._scripts.call("clock", [self.keys.meta], [])
        return int(seconds) * 1000 + int(micros) / 1000

    async def stats(self) -> QueueStats:
        """Exact counts per state, from one atomic snapshot (O(1))."""
        k = self.keys
        w, a, c, f, d, x, paused = await self._scripts.call(
            "stats",
            [k.waiting, k.active, k.completed, k.failed, k.delayed, k.cancelled, k.meta],
            [],
        )
        return QueueStats(
            waiting=w, active=a, completed=c, failed=f, delayed=d,
            total=w + a + c + f + d, cancelled=x, paused=bool(paused),
        )  # fmt: skip

    async def get_job(self, job_id: str) -> Job:
        """One job; raises :class:`JobNotFoundError`."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.keys.job(job_id))
            pipe.get(self.keys.data(job_id))
            fields, payload = await pipe.execute()
        if not fields:
            raise JobNotFoundError(job_id)
        return Job.from_hash(job_id, fields, payload or "")

    async def find_job(self, job_id: str) -> Job | None:
        """One job, or None when there is none of that id."""
        try:
            return await self.get_job(job_id)
        except JobNotFoundError:
            return None

    async def position(self, job_id: str) -> int | None:
        """Jobs ahead of ``job_id`` in claim order, or None when it is not waiting."""
        rank = await self.client.zrank(self.keys.waiting, job_id)
        return None if rank is None else int(rank)  # type: ignore[arg-type]

    async def count_upstream(self, outcome: str) -> None:
        """Count one AI request's outcome (an HTTP status, ``timeout``, ``connection``, ...)."""
        await self.client.hincrby(self.keys.prefix + "upstream_status", outcome, 1)

    async def upstream_counts(self) -> dict[str, int]:
        """AI request outcomes since the queue was created."""
        raw = await self.client.hgetall(self.keys.prefix + "upstream_status")
        return {str(k): int(v) for k, v in raw.items()}

    async def user_pending(self, user_id: str) -> int:
        """Unfinished (waiting, delayed or active) jobs of ``user_id``."""
        return int(await self.client.hget(self.keys.users, user_id) or 0)

    async def throughput(self, window_s: int = 60) -> Throughput:
        """Jobs completed in about the last ``window_s`` seconds (10 s buckets) and their
        summed run time."""
        now_bucket = int(await self.server_ms() / 1000) // 10
        buckets = range(now_bucket - window_s // 10 + 1, now_bucket + 1)
        fields = [f"{kind}:{b}" for b in buckets for kind in ("c", "ms")]
        values = await self.client.hmget(self.keys.prefix + "tput", fields)
        counts = [int(v or 0) for v in values]
        busy = [i for i, c in enumerate(counts[0::2]) if c]
        return Throughput(
            window_s=len(buckets) * 10,
            completed=sum(counts[0::2]),
            run_ms=sum(counts[1::2]),
            observed_s=(len(buckets) - busy[0]) * 10 if busy else 0,
        )

    async def live_workers(self) -> list[WorkerInfo]:
        """Workers that beat within the last lease, newest beat first.

        A worker beats every third of a lease, so one silent for a whole lease has missed
        three beats: it is gone (its jobs come back when their leases expire), and its slots
        must not count towards capacity or any ETA. One that stops gracefully deregisters
        at once (:meth:`deregister`).
        """
        now_ms = await self.server_ms()
        seen: list[tuple[str, float]] = await self.client.zrange(  # type: ignore[assignment]
            self.keys.workers, 0, -1, desc=True, withscores=True
        )
        oldest = now_ms - self.settings.lease_ms
        beats = [(worker_id, beat) for worker_id, beat in seen if beat >= oldest]
        if not beats:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for worker_id, _ in beats:
                pipe.hget(self.keys.worker(worker_id), "info")
            infos = await pipe.execute()
        workers = []
        for (worker_id, beat), info in zip(beats, infos, strict=True):
            if info:
                details = msgspec.json.decode(info)
                workers.append(WorkerInfo(id=worker_id, last_beat_ms=int(beat), **details))
        return workers

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

    async def metrics(self) -> LedgerMetrics:
        """The queue's lifetime counters."""
        raw = await self.client.hgetall(self.keys.metrics)
        return msgspec.convert({f: int(v) for f, v in raw.items()}, LedgerMetrics)

    async def hold(self, hold_ms: int) -> int:
        """Stop all claims for ``hold_ms`` (an upstream 429); returns the hold's end (ms)."""
        if hold_ms < 0:
            raise InvalidJobError(f"hold must not be negative, got {hold_ms} ms")
        until: int = await self._scripts.call("hold", [self.keys.meta], [hold_ms])
        return until

    async def pause(self) -> None:
        """Workers stop claiming; active jobs finish."""
        await self.client.hset(self.keys.meta, "paused", "1")

    async def resume(self) -> None:
        """Workers claim again (blocked ones are woken)."""
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(self.keys.meta, "paused")
            pipe.lpush(self.keys.marker, "1")
            await pipe.execute()
