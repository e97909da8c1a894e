"""Redis key names of one queue.

All keys share the hash tag ``{<queue>}`` so that one queue lives in one Redis Cluster slot
and every Lua script may touch all of them.
"""

from __future__ import annotations

from typing import NamedTuple


class QueueKeys(NamedTuple):
    """Every key of a queue: the fixed ones, and methods for the per-job, per-worker and
    per-user ones and the API's (keys, request limits, idempotency records, dashboard
    sessions). The Lua scripts name the same keys from the prefix (``_lib.lua``:
    ``job_key``, ``data_key``, ``index_key``)."""

    prefix: str
    waiting: str
    active: str
    delayed: str
    completed: str
    failed: str
    cancelled: str
    expired: str
    """Jobs that did not start before their deadline (score = when they expired)."""
    deadlines: str
    """Waiting and delayed jobs with a deadline to start (score = that deadline, ms)."""
    dedup: str
    """De-duplication key → its unfinished job's id (a hash)."""
    limiter: str
    upstream: str
    meta: str
    events: str
    marker: str
    metrics: str
    workers: str
    users: str
    upstream_status: str
    """AI request outcomes (an HTTP status, ``timeout``, ``connection``) since creation."""
    tput: str
    """Completions and their run time per 10 s bucket (written by the finish scripts)."""
    tpm: str
    """Completions and dead letters per minute, the last hour."""
    arrivals: str
    """Enqueues per priority per second, the last minute (the ETA's forecast)."""
    turns: str
    """Of those, the ones that took the next turn of their priority (their user had nothing
    waiting ahead): the ETA's forecast of cut-ins from later arrivals."""
    api_keys: str
    """Every API key id of the queue (a set)."""
    flow_tags: str
    """Fair share: the prefix of the zsets of flows' (``<priority>:<user>``) finish tags,
    one per virtual time (``<prefix>vt:<priority>`` strict, ``<prefix>vt`` weighted)."""
    user_waiting: str
    """Waiting jobs per user (a zset, score = count; parked ones included)."""
    user_active: str
    """Running jobs per user (a zset, score = count), for ``USER_MAX_ACTIVE``."""

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
            expired=p + "expired",
            deadlines=p + "deadlines",
            dedup=p + "dedup",
            limiter=p + "limiter",
            upstream=p + "upstream",
            meta=p + "meta",
            events=p + "events",
            marker=p + "marker",
            metrics=p + "metrics",
            workers=p + "workers",
            users=p + "users",
            upstream_status=p + "upstream_status",
            tput=p + "tput",
            tpm=p + "tpm",
            arrivals=p + "arr",
            turns=p + "arrt",
            api_keys=p + "apikeys",
            flow_tags=p + "ftag:",
            user_waiting=p + "uwait",
            user_active=p + "uactive",
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

    def api_key(self, key_id: str) -> str:
        """The hash of one API key (its hash, user, tier, label)."""
        return f"{self.prefix}apikey:{key_id}"

    def webhook_secret(self, key_id: str) -> str:
        """The hash of one API key's webhook signing secrets (``webhook_secrets``)."""
        return f"{self.prefix}whsec:{key_id}"

    def api_keys_of(self, user_id: str) -> str:
        """The set of one user's API key ids."""
        return f"{self.prefix}apikeys:user:{user_id}"

    @property
    def request_limits(self) -> str:
        """The prefix of the per-user request-rate windows (``<prefix><user>``)."""
        return f"{self.prefix}ratelimit:"

    @property
    def idempotency(self) -> str:
        """The prefix of the idempotency records (``<prefix><user>:<key>``)."""
        return f"{self.prefix}idem:"

    def stream_token(self, digest: str) -> str:
        """One job-scoped token for following events (by the token's SHA-256)."""
        return f"{self.prefix}streamtoken:{digest}"

    @property
    def dashboard(self) -> str:
        """The prefix of the dashboard's sessions and login counters (``<prefix>session:…``)."""
        return f"{self.prefix}dash:"

    def worker(self, worker_id: str) -> str:
        """The hash describing one live worker."""
        return f"{self.prefix}worker:{worker_id}"

    def parked(self, user_id: str) -> str:
        """The zset of one user's waiting jobs parked while the user is at
        ``USER_MAX_ACTIVE`` (score = their place in the waiting set)."""
        return f"{self.prefix}parked:{user_id}"

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
            "expired": self.expired,
        }  # fmt: skip
        return sets[state]
