"""Jobs of the asynchronous protocols (comfyui, runpod): submitted, worked, polled, cancelled."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from loadtest.stub_ai.config import Outcome
from loadtest.stub_ai.generation import GenRequest
from loadtest.stub_ai.images import StoredImage
from loadtest.stub_ai.stats import Stats

log = logging.getLogger("loadtest.stub_ai.jobs")

JobStatus = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "CANCELLED"]


@dataclass(eq=False)
class Job:
    """One accepted submission of an asynchronous protocol."""

    request: GenRequest
    outcome: Outcome
    endpoint: str = ""
    id: str = ""
    number: int = 0
    status: JobStatus = "IN_QUEUE"
    image: StoredImage | None = None
    execution_ms: int = 0
    done: bool = False
    """No longer counted in flight: completed, cancelled, or a hang that ran out."""
    task: asyncio.Task[None] | None = None


class JobStore:
    """One protocol's jobs: running ones until they end, then the last ``keep`` finished ones."""

    def __init__(self, stats: Stats, keep: int = 2000) -> None:
        self._stats = stats
        self._keep = keep
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._finished: deque[str] = deque()
        self._numbers = 0

    def start(self, job: Job, work: Callable[[Job], Awaitable[None]]) -> Job:
        """Give ``job`` an id and number and run ``work`` on it in the background.

        The caller has already counted the job in flight; the store ends that exactly once.
        """
        self._numbers += 1
        job.id, job.number = str(uuid.uuid4()), self._numbers
        self._jobs[job.id] = job
        job.task = asyncio.create_task(self._run(job, work), name=f"stub-job-{job.id}")
        job.task.add_done_callback(_log_failure)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, if still kept."""
        return self._jobs.get(job_id)

    def cancel(self, job: Job) -> bool:
        """Stop ``job`` if it still runs; True when it was cancelled now."""
        if job.done:
            return False
        job.status = "CANCELLED"
        self._end(job)
        self._stats.cancel()
        if job.task is not None:
            job.task.cancel()
        return True

    async def close(self) -> None:
        """Cancel every running job and wait for them (shutdown)."""
        tasks = [job.task for job in self._jobs.values() if job.task and not job.task.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, job: Job, work: Callable[[Job], Awaitable[None]]) -> None:
        try:
            await work(job)
        finally:
            self._end(job)

    def _end(self, job: Job) -> None:
        if job.done:
            return
        job.done = True
        self._stats.work_ended()
        # Only finished jobs are forgotten: a running one is still counted and polled.
        self._finished.append(job.id)
        while len(self._finished) > self._keep:
            self._jobs.pop(self._finished.popleft(), None)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("stub job task %s died", task.get_name(), exc_info=task.exception())
