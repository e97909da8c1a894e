"""The read side of a job: what its Redis hash says, as a typed struct."""

from __future__ import annotations

import enum

import msgspec

from imagequeue_common.contracts import JobState, Priority


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """One job as stored in the queue (timestamps are Redis server milliseconds)."""

    id: str
    name: str
    state: JobState
    priority: Priority
    user: str
    payload: str
    attempts: int
    max_attempts: int
    created_at: int
    progress: int = 0
    progress_msg: str = ""
    started_at: int | None = None
    finished_at: int | None = None
    due_at: int | None = None
    error: str | None = None
    """The last error as users may see it (``Type: message``)."""
    error_detail: str = ""
    """Where that error was raised and, for a dead letter, its traceback: operators only."""
    result: str | None = None
    stalls: int = 0
    worker: str | None = None
    cancel_requested: bool = False
    ref: str = ""
    """What the job is for, as the producer labelled it (the api: the character id)."""
    start_by: int | None = None
    """Its deadline to start: still waiting then, it expires."""

    @classmethod
    def from_hash(cls, job_id: str, fields: dict[str, str], payload: str) -> Job:
        """Build from the job hash (an ``HGETALL`` reply) and the payload stored beside it."""

        def opt_int(key: str) -> int | None:
            value = fields.get(key)
            return int(value) if value not in (None, "") else None

        return cls(
            id=job_id,
            name=fields["name"],
            state=JobState(fields["state"]),
            priority=Priority(fields["priority"]),
            user=fields.get("user", ""),
            payload=payload,
            attempts=int(fields.get("attempts", 0)),
            max_attempts=int(fields.get("max_attempts", 1)),
            created_at=int(fields["created_at"]),
            progress=int(float(fields.get("progress", 0))),
            progress_msg=fields.get("progress_msg", ""),
            started_at=opt_int("started_at"),
            finished_at=opt_int("finished_at"),
            due_at=opt_int("due_at"),
            error=fields.get("error"),
            error_detail=fields.get("error_detail", ""),
            result=fields.get("result"),
            stalls=int(fields.get("stalls", 0)),
            worker=fields.get("worker"),
            cancel_requested=fields.get("cancel") == "1",
            ref=fields.get("ref", ""),
            start_by=opt_int("start_by"),
        )


class Claimed(msgspec.Struct, frozen=True):
    """A job leased to this worker by ``claim``."""

    job_id: str
    payload: str
    token: str
    attempts: int
    max_attempts: int


class ClaimResult(msgspec.Struct, frozen=True):
    """What ``claim`` answered: jobs, or why none and how long to wait (ms, -1 = no hint)."""

    status: str
    wait_ms: int
    jobs: list[Claimed]
    applied: list[bool] = []
    """For each finished run handed to the claim: was its end recorded (lease still held)?"""


class RunStatus(enum.IntEnum):
    """What the ``progress`` script (and :meth:`JobLedger.run_status`) answers a run."""

    LEASE_LOST = -1
    """Another worker holds the job now: this run's writes change nothing."""
    CANCEL_REQUESTED = 0
    GO_ON = 1


class EnqueueRefusal(enum.IntEnum):
    """Why the ``enqueue`` script added nothing (it answers the new job's place otherwise)."""

    EXISTS = 0
    OVER_QUOTA = -1
    QUEUE_FULL = -2
