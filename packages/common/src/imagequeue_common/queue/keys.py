"""Redis key names of one queue.

All keys share the hash tag ``{<queue>}`` so that one queue lives in one Redis Cluster slot
and every Lua script may touch all of them.
"""

from __future__ import annotations

from typing import NamedTuple


class QueueKeys(NamedTuple):
    """The fixed keys of a queue, plus the prefix of its per-job keys and indexes.

    Besides these: ``tput`` (completions per 10 s), ``tpm`` (completions and dead letters per
    minute, last hour), ``upstream_status`` and the per-user / per-ref search indexes.
    """

    prefix: str
    waiting: str
    active: str
    delayed: str
    completed: str
    failed: str
    cancelled: str
    limiter: str
    upstream: str
    meta: str
    events: str
    marker: str
    metrics: str
    workers: str
    users: str

    @classmethod
    def for_queue(cls, queue: str, namespace: str = "iq") -> QueueKeys:
        """Keys for queue ``queue`` under ``namespace``."""
        p = f"{namespace}:{{{queue}}}:"
        return cls(
            prefix=p,
            waiting=p + "waiting",
            active=p + "active",
            delayed=p + "delayed",
            completed=p + "completed",
            failed=p + "failed",
            cancelled=p + "cancelled",
            limiter=p + "limiter",
            upstream=p + "upstream",
            meta=p + "meta",
            events=p + "events",
            marker=p + "marker",
            metrics=p + "metrics",
            workers=p + "workers",
            users=p + "users",
        )

    def job(self, job_id: str) -> str:
        """The hash holding one job."""
        return f"{self.prefix}job:{job_id}"

    def data(self, job_id: str) -> str:
        """The string holding one job's payload."""
        return f"{self.prefix}job:{job_id}:data"

    def result(self, task_id: str) -> str:
        """taskiq's stored result of one task (see ``queue.result_backend``)."""
        return f"{self.prefix}result:{task_id}"

    def progress(self, task_id: str) -> str:
        """taskiq's stored progress of one task (``ProgressTracker``)."""
        return f"{self.prefix}progress:{task_id}"

    def worker(self, worker_id: str) -> str:
        """The hash describing one live worker."""
        return f"{self.prefix}worker:{worker_id}"

    def by_user(self, user_id: str) -> str:
        """The zset of one user's jobs (score = created ms), for search."""
        return f"{self.prefix}byuser:{user_id}"

    def by_ref(self, ref: str) -> str:
        """The zset of the jobs with one ``ref`` label (score = created ms), for search."""
        return f"{self.prefix}byref:{ref}"

    def state_set(self, state: str) -> str:
        """The zset holding the jobs in ``state`` (``waiting``, ``active``, ...)."""
        sets = {
            "waiting": self.waiting, "active": self.active, "delayed": self.delayed,
            "completed": self.completed, "failed": self.failed, "cancelled": self.cancelled,
        }  # fmt: skip
        return sets[state]
