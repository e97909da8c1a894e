"""What a running task knows of its job: id, attempt, and a way to report progress.

A running job does not stop because Redis is away for a moment: its progress points and
cancellation checks are skipped while Redis cannot be reached (one log line per outage for
all jobs of the process, see ``RedisOutage``); the outcome is kept by the finisher and
written when Redis answers again, fenced by the lease token. What must come from Redis —
the rate limit's permit — is waited for instead (:meth:`JobHandle.until_redis_answers`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from taskiq import Context, TaskiqDepends

from imagequeue_common.errors import JobCancelledError, LeaseLostError, QueueUnavailableError
from imagequeue_common.outage import RedisOutage
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.jobs import RunStatus
from imagequeue_common.queue.lease import Lease
from imagequeue_common.queue.ledger import JobLedger

log = logging.getLogger("imagequeue.worker")
T = TypeVar("T")


class JobHandle:
    """The running job, as seen from inside its task."""

    def __init__(self, ledger: JobLedger, lease: Lease, outage: RedisOutage | None = None) -> None:
        self._ledger = ledger
        self._lease = lease
        self._outage = outage or RedisOutage(
            "job", log, retry_s=ledger.settings.redis_retry_ms / 1000
        )

    async def if_redis_answers(self, call: Awaitable[T]) -> T | None:
        """``await call``, or None when Redis cannot be reached (noted as an outage)."""
        try:
            answer = await call
        except Exception as exc:
            if not self._outage.noted(exc):
                raise
            return None
        self._outage.answered()
        return answer

    async def until_redis_answers(self, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, tried again every ``REDIS_RETRY_MS`` while Redis cannot be
        reached (the lease is renewed when Redis is back; a lost one is then reported)."""
        while True:
            answer = await self.if_redis_answers(call())
            if answer is not None:
                return answer
            await asyncio.sleep(self._outage.retry_s)

    @property
    def id(self) -> str:
        """The job id (also the taskiq task id)."""
        return self._lease.job_id

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 on the first retry, ..."""
        return self._lease.attempts

    @property
    def token(self) -> str:
        """The lease token this run holds the job under."""
        return self._lease.token

    @property
    def max_attempts(self) -> int:
        """Runs allowed in all (retries + 1)."""
        return self._lease.max_attempts

    async def progress(self, percent: int, message: str = "") -> None:
        """Record and publish progress; a progress point is also where cancellation lands.

        Raises :class:`JobCancelledError` when the job was cancelled, and
        :class:`LeaseLostError` when another worker has taken the job over.
        """
        answer = await self.if_redis_answers(
            self._ledger.progress(self.id, self._lease.token, percent, message)
        )
        log.info("Job %s progress: %d%%", self.id, percent, extra={"job_id": self.id})
        if answer is not None:  # None: Redis away, the point is skipped
            self._check(answer)

    async def cancel_requested(self) -> bool:
        """True once the job was cancelled; cheap enough for a polling loop (one HMGET).

        Raises :class:`LeaseLostError` when another worker has taken the job over.
        """
        answer = await self.if_redis_answers(self._ledger.run_status(self.id, self._lease.token))
        if answer is None:  # Redis away: asked again at the next poll
            return False
        if answer is RunStatus.LEASE_LOST:
            raise LeaseLostError(self.id)
        return answer is RunStatus.CANCEL_REQUESTED

    def _check(self, answer: RunStatus) -> None:
        if answer is RunStatus.CANCEL_REQUESTED:
            raise JobCancelledError(self.id)
        if answer is RunStatus.LEASE_LOST:
            raise LeaseLostError(self.id)


def current_job(context: Annotated[Context, TaskiqDepends()]) -> JobHandle:
    """taskiq dependency: the :class:`JobHandle` of the job being run."""
    broker = context.broker
    if not isinstance(broker, EngineBroker):
        raise QueueUnavailableError("current_job needs the imagequeue EngineBroker")
    lease = broker.lease(context.message.task_id)
    if lease is None:
        raise QueueUnavailableError(f"no lease held on job {context.message.task_id!r}")
    return JobHandle(broker.ledger, lease, broker.run_outage)


CurrentJob = Annotated[JobHandle, TaskiqDepends(current_job)]
"""Annotate a task parameter with this to receive its :class:`JobHandle`."""
