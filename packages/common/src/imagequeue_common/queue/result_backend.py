"""taskiq's result backend on the queue's Redis, for any task id.

Where the engine records a run's end, the result is read from the job itself: a completed
job's value (JSON) is the result, with no second copy in Redis. Everything else is stored
as taskiq serialises it (``TaskiqResult`` JSON: the error with its type, which taskiq
restores where it can import it) under ``result:<id>`` next to the queue's keys, for as long
as finished jobs are kept: a run's failure (the error's type would be lost in the job's
text), and any result set for an id the engine does not hold a lease on. A run the engine
will retry stores nothing: the job is not done. taskiq's ``ProgressTracker`` progress goes
under ``progress:<id>``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import msgspec
from taskiq import AsyncResultBackend, TaskiqResult
from taskiq.depends.progress_tracker import TaskProgress

from imagequeue_common.contracts import JobState
from imagequeue_common.errors import TerminalJobError
from imagequeue_common.queue.jobs import Job
from imagequeue_common.queue.lease import Lease
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings

_R = TypeVar("_R")


class ResultHost(Protocol):
    """What the backend needs of its broker (``EngineBroker``)."""

    settings: Settings

    @property
    def ledger(self) -> JobLedger:
        """The queue's job ledger (after startup)."""

    def run_of(self, job_id: str) -> Lease | None:
        """The lease of this worker's current or recently ended run of ``job_id``."""


class JobResultBackend(AsyncResultBackend[_R]):
    """``wait_result()`` for any task; engine jobs are ready once they reached an end state."""

    def __init__(self, broker: ResultHost) -> None:
        self._broker = broker
        settings = broker.settings
        self._keep_ms = max(settings.keep_completed_ms, settings.keep_failed_ms, 60_000)

    async def set_result(self, task_id: str, result: TaskiqResult[_R]) -> None:
        """Store ``result`` unless the job's own record says it all (see the module)."""
        lease = self._broker.run_of(task_id)
        outcome = None if lease is None else lease.outcome
        if (
            lease is not None
            and outcome is not None
            and (lease.lost or outcome.kind == "retry" or not result.is_err)
        ):
            return
        ledger = self._broker.ledger
        await ledger.client.set(ledger.keys.result(task_id), result.model_dump_json(),
                                px=self._keep_ms)  # fmt: skip

    async def is_result_ready(self, task_id: str) -> bool:
        """True once a result is stored or the job reached an end state."""
        ledger = self._broker.ledger
        if await ledger.client.exists(ledger.keys.result(task_id)):
            return True
        job = await ledger.find_job(task_id)
        return job is not None and job.state.is_final

    async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[_R]:
        """The stored result, else the job's own (a failure as :class:`TerminalJobError`
        with the job's error text); raises ``JobNotFoundError`` for an unknown id."""
        ledger = self._broker.ledger
        raw = await ledger.client.get(ledger.keys.result(task_id))
        if raw is not None:
            stored: TaskiqResult[_R] = TaskiqResult[Any].model_validate_json(raw)
            if not with_logs:
                stored.log = None
            return stored
        job = await ledger.get_job(task_id)
        if job.state is JobState.COMPLETED:
            value: Any = msgspec.json.decode(job.result) if job.result else None
            return TaskiqResult(is_err=False, return_value=value, execution_time=_ran_s(job))
        error = TerminalJobError(job.error or f"job {job.state.value}")
        return TaskiqResult(is_err=True, return_value=None, execution_time=_ran_s(job), error=error)  # type: ignore[arg-type]

    async def set_progress(self, task_id: str, progress: TaskProgress[Any]) -> None:
        """Store taskiq's progress of ``task_id`` (``ProgressTracker.set_progress``)."""
        ledger = self._broker.ledger
        await ledger.client.set(ledger.keys.progress(task_id), progress.model_dump_json(),
                                px=self._keep_ms)  # fmt: skip

    async def get_progress(self, task_id: str) -> TaskProgress[Any] | None:
        """The last progress stored for ``task_id``, or None."""
        ledger = self._broker.ledger
        raw = await ledger.client.get(ledger.keys.progress(task_id))
        return None if raw is None else TaskProgress[Any].model_validate_json(raw)


def _ran_s(job: Job) -> float:
    if job.started_at is None or job.finished_at is None:
        return 0.0
    return float(job.finished_at - job.started_at) / 1000
