"""The ledger's reads: counts, one job, positions, throughput, live workers, counters
(what the API's views and ETAs ask; nothing here changes a job)."""

from __future__ import annotations

import msgspec

from imagequeue_common.contracts import Priority, QueueStats
from imagequeue_common.errors import JobNotFoundError
from imagequeue_common.queue.fairness import tag_of, vt_field
from imagequeue_common.queue.jobs import Job
from imagequeue_common.queue.ledger_base import LedgerBase


class LedgerMetrics(msgspec.Struct, frozen=True):
    """Counters since the queue was created."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    stalled: int = 0
    cancelled: int = 0
    expired: int = 0
    rate_limited: int = 0
    refused_length: int = 0
    """New jobs refused because ``MAX_QUEUE_LENGTH`` jobs waited (admission control)."""
    refused_wait: int = 0
    """New jobs refused because their predicted wait was over ``MAX_QUEUE_WAIT_S``."""
    upstream_waits: int = 0
    """AI requests that had to wait for the rate limit after their job was claimed."""
    run_ms_completed: int = 0


class Prediction(msgspec.Struct, frozen=True):
    """Where a job would stand if it were enqueued now (:meth:`LedgerReads.predict`)."""

    position: int
    """Jobs that would be claimed before it (as ``Enqueued.position`` would say)."""
    active: int
    queued: int
    """Jobs waiting or delayed (what ``MAX_QUEUE_LENGTH`` bounds)."""
    duplicate_of: str = ""
    """The unfinished job already queued under the same de-duplication key, if any."""
    distance: int = 0
    """How far its tag would be ahead of the virtual time (:class:`Place`)."""


class Place(msgspec.Struct, frozen=True):
    """Where a waiting job stands."""

    position: int
    """Jobs that will be claimed before it if nothing new arrives (its rank)."""
    distance: int
    """Its tag minus the virtual time of its priority (tag units; ``queue.fairness``): a
    job arriving later takes its turn first while this is more than that job's increment,
    which the ETA counts as cut-ins."""


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


class UserLoad(msgspec.Struct, frozen=True):
    """One user's jobs now."""

    user: str
    waiting: int
    running: int


class LedgerReads(LedgerBase):
    """Reads of one queue's jobs and counters."""

    async def server_ms(self) -> float:
        """The server time of the queue's node, in milliseconds (what its scripts use)."""
        seconds, micros = await self._scripts.call("clock", [self.keys.meta], [])
        return int(seconds) * 1000 + int(micros) / 1000

    async def stats(self) -> QueueStats:
        """Exact counts per state, from one atomic snapshot (O(1))."""
        k = self.keys
        w, a, c, f, d, x, paused, uw, ua, e = await self._scripts.call(
            "stats",
            [k.waiting, k.active, k.completed, k.failed, k.delayed, k.cancelled, k.meta,
             k.user_waiting, k.user_active, k.expired],
            [],
        )  # fmt: skip
        return QueueStats(
            waiting=w, active=a, completed=c, failed=f, delayed=d,
            total=w + a + c + f + d, cancelled=x, paused=bool(paused),
            users_waiting=uw, users_active=ua, expired=e,
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

    async def predict(self, user_id: str, priority: Priority, dedup_key: str = "") -> Prediction:
        """Where a new job of ``user_id`` at ``priority`` would stand if enqueued now."""
        k = self.keys
        ahead, active, queued, dup, distance = await self._scripts.call(
            "predict", [k.waiting, k.delayed, k.active, k.meta],
            [k.prefix, priority.value, user_id, self.settings.fairness, dedup_key],
        )  # fmt: skip
        return Prediction(int(ahead), int(active), int(queued), str(dup), int(distance))

    async def place(self, job: Job) -> Place | None:
        """Where ``job`` stands if it is waiting (None otherwise)."""
        s = self.settings
        strict = s.priority_policy == "strict"
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.zrank(self.keys.waiting, job.id)
            pipe.zscore(self.keys.waiting, job.id)
            pipe.hget(self.keys.meta, vt_field(job.priority.value, strict))
            rank, score, vt = await pipe.execute()
        if rank is None or score is None:
            return None
        tag = tag_of(float(score), job.priority.value, strict)
        return Place(int(rank), max(tag - int(float(vt or 0)), 0))

    async def busiest_users(self, limit: int = 10) -> list[UserLoad]:
        """The users with the most waiting jobs and those with the most running ones (up to
        ``limit`` of each, merged), most waiting first."""
        k = self.keys
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.zrevrange(k.user_waiting, 0, limit - 1, withscores=True)
            pipe.zrevrange(k.user_active, 0, limit - 1, withscores=True)
            most_waiting, most_running = await pipe.execute()
        users = list(dict.fromkeys(str(u) for u, _ in [*most_waiting, *most_running]))
        async with self.client.pipeline(transaction=True) as pipe:
            for user in users:
                pipe.zscore(k.user_waiting, user)
                pipe.zscore(k.user_active, user)
            scores = await pipe.execute()
        loads = [
            UserLoad(user, int(w or 0), int(a or 0))
            for user, w, a in zip(users, scores[0::2], scores[1::2], strict=True)
        ]
        return sorted(loads, key=lambda u: (-u.waiting, -u.running, u.user))

    async def upstream_counts(self) -> dict[str, int]:
        """AI request outcomes since the queue was created."""
        raw = await self.client.hgetall(self.keys.upstream_status)
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
        values = await self.client.hmget(self.keys.tput, fields)
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

    async def metrics(self) -> LedgerMetrics:
        """The queue's lifetime counters."""
        raw = await self.client.hgetall(self.keys.metrics)
        return msgspec.convert({f: int(v) for f, v in raw.items()}, LedgerMetrics)
