"""Task results read straight from the job hash (no second copy in Redis)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from taskiq import AsyncResultBackend, TaskiqResult

from imagequeue_common.contracts import JobState
from imagequeue_common.errors import JobNotFoundError, TerminalJobError

if TYPE_CHECKING:
    from imagequeue_common.queue.broker import EngineBroker

_R = TypeVar("_R")
_DONE = (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


class JobResultBackend(AsyncResultBackend[_R]):
    """``wait_result()`` for engine jobs: ready once the job completed, failed or was cancelled."""

    def __init__(self, broker: EngineBroker) -> None:
        self._broker = broker

    async def set_result(self, task_id: str, result: TaskiqResult[_R]) -> None:
        """Nothing to do: the ``finish`` script stores the result with the state change."""

    async def is_result_ready(self, task_id: str) -> bool:
        """True once the job reached an end state."""
        try:
            job = await self._broker.ledger.get_job(task_id)
        except JobNotFoundError:
            return False
        return job.state in _DONE

    async def get_result(self, task_id: str, with_logs: bool = False) -> TaskiqResult[_R]:
        """The job's result, or its error as a :class:`TerminalJobError`."""
        job = await self._broker.ledger.get_job(task_id)
        if job.state == JobState.COMPLETED:
            value: Any = msgspec.json.decode(job.result) if job.result else None
            return TaskiqResult(is_err=False, return_value=value, execution_time=_ran_s(job))
        error = TerminalJobError(job.error or f"job {job.state.value}")
        return TaskiqResult(is_err=True, return_value=None, execution_time=_ran_s(job), error=error)  # type: ignore[arg-type]


def _ran_s(job: Any) -> float:
    if job.started_at is None or job.finished_at is None:
        return 0.0
    return float(job.finished_at - job.started_at) / 1000
