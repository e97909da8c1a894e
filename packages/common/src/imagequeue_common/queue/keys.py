"""Redis key names of one queue.

All keys share the hash tag ``{<queue>}`` so that one queue lives in one Redis Cluster slot
and every Lua script may touch all of them.
"""

from __future__ import annotations

from typing import NamedTuple


class QueueKeys(NamedTuple):
    """The fixed keys of a queue, plus the prefix of its per-job hashes."""

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

    def worker(self, worker_id: str) -> str:
        """The hash describing one live worker."""
        return f"{self.prefix}worker:{worker_id}"
