"""``EngineBroker``: a taskiq broker whose every job state lives in Redis (BullMQ-style).

Workers lease jobs through the ``claim`` script, one per free slot, within the global
sliding-window rate limit; a heartbeat renews the leases and returns stalled jobs of dead
workers to the queue; a run's end is recorded by the ``finish`` script under its lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError
from taskiq import AckableMessage, AsyncBroker
from taskiq.message import BrokerMessage

from imagequeue_common.errors import QueueUnavailableError
from imagequeue_common.outage import RedisOutage
from imagequeue_common.queue.finisher import Finisher, report
from imagequeue_common.queue.formatter import MsgspecFormatter, encode_call
from imagequeue_common.queue.heartbeat import Heartbeat
from imagequeue_common.queue.jobs import Claimed, ClaimResult
from imagequeue_common.queue.labels import delay_ms, job_options
from imagequeue_common.queue.lease import Lease
from imagequeue_common.queue.ledger import Enqueued, FinishOp, JobLedger
from imagequeue_common.queue.outcomes import OutcomeMiddleware
from imagequeue_common.queue.result_backend import JobResultBackend
from imagequeue_common.queue.retry import Outcome, RetryPolicy
from imagequeue_common.queue.runlog import log_outcome
from imagequeue_common.redis_conn import blocking_client, command_client, require_no_eviction
from imagequeue_common.runtime import freeze_startup_heap
from imagequeue_common.settings import Settings

log = logging.getLogger("imagequeue.engine")

IDLE_BLOCK_MS = 5000
"""Longest an idle worker blocks before it asks again (a guard against lost connections)."""


class EngineBroker(AsyncBroker):
    """The imagequeue broker. Build one per process; nothing connects before ``startup``."""

    def __init__(self, settings: Settings, redis_url: str, *, namespace: str = "iq") -> None:
        super().__init__()
        self.settings = settings
        self.with_result_backend(JobResultBackend(self))
        self.redis_url = redis_url
        self.namespace = namespace
        self.formatter = MsgspecFormatter()
        self.policy = RetryPolicy.from_settings(settings)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._client: Redis | None = None
        self._blocking: Redis | None = None
        self._ledger: JobLedger | None = None
        self._finisher: Finisher | None = None
        self._heartbeat: Heartbeat | None = None
        self._leases: dict[str, Lease] = {}
        self._settled: OrderedDict[str, Lease] = OrderedDict()
        """The last runs settled here (a few per slot): ``run_of`` for the result backend,
        whose ``set_result`` comes after the settling under some ack types."""
        self._settled_cap = max(64, 4 * settings.worker_concurrency)
        self._ready: deque[AckableMessage] = deque()
        self._claiming: asyncio.Task[ClaimResult] | None = None
        self._claim_outage = RedisOutage("claim", log, retry_s=settings.redis_retry_ms / 1000)
        retry_s = settings.redis_retry_ms / 1000
        self.run_outage = RedisOutage("job", log, retry_s=retry_s)
        """For the Redis calls of running jobs (progress, rate-limit permits): see JobHandle."""
        self.add_middlewares(OutcomeMiddleware())

    @property
    def ledger(self) -> JobLedger:
        """The job ledger (after ``startup``)."""
        if self._ledger is None:
            raise QueueUnavailableError("the broker is not started")
        return self._ledger

    def has_ready(self) -> bool:
        """True when a claimed job waits to be handed to taskiq."""
        return bool(self._ready)

    def take_ready(self) -> AckableMessage:
        """The next claimed job (see :class:`EngineReceiver`); only after :meth:`has_ready`."""
        return self._ready.popleft()

    def lease(self, job_id: str) -> Lease | None:
        """This worker's lease on ``job_id``, if it holds one."""
        return self._leases.get(job_id)

    def run_of(self, job_id: str) -> Lease | None:
        """The lease of this worker's current or recently ended run of ``job_id``."""
        return self._leases.get(job_id) or self._settled.get(job_id)

    async def startup(self) -> None:
        """Connect; in a worker, also start the finisher and the heartbeat."""
        self._client = command_client(self.redis_url)
        try:
            await require_no_eviction(self._client)
        except BaseException:
            await self._client.aclose()
            self._client = None
            raise
        self._ledger = JobLedger(self._client, self.settings, namespace=self.namespace)
        if self.is_worker_process:
            await self._start_consuming()
        await super().startup()  # the worker's own startup handlers (store, HTTP client)
        if self.is_worker_process:
            freeze_startup_heap()

    async def _start_consuming(self) -> None:
        """What taking jobs needs: a client for the idle wait, the finisher that records
        runs, the heartbeat that renews their leases (at startup in a worker process; at
        the first :meth:`listen` in any other)."""
        self._blocking = blocking_client(self.redis_url)
        self._finisher = Finisher(self.ledger, retry_s=self.settings.redis_retry_ms / 1000)
        self._finisher.start()
        self._heartbeat = Heartbeat(self.ledger, self.settings, self.worker_id, self._leases)
        await self._heartbeat.start()

    async def shutdown(self) -> None:
        """Stop taking work, record finished runs, give back unstarted jobs, close clients."""
        await super().shutdown()
        consumed = self._finisher is not None
        if self._heartbeat is not None:
            await self._heartbeat.stop()
            self._heartbeat = None
        if self._claiming is not None:
            await asyncio.gather(self._claiming, return_exceptions=True)
        if self._finisher is not None:
            await self._finisher.close()
            self._finisher = None
        if self._ledger is not None and self._leases:
            await self._release_unfinished(self._ledger)
        if self._ledger is not None and consumed:
            await self._deregister(self._ledger)
        for client in (self._blocking, self._client):
            if client is not None:
                await client.aclose()
        self._client = self._blocking = self._ledger = None

    async def kick(self, message: BrokerMessage) -> None:
        """Enqueue one job from a taskiq message (labels: priority, delay, user_id, ref,
        retries, max_attempts, rate_limited). The id of a finished job starts it afresh; a run that
        kicks its own task id again (taskiq's ``context.requeue()``, its retry
        middlewares) is delivered again, with the new message, after its ``delay`` once
        this run has ended; an id waiting or running elsewhere is refused
        (:class:`DuplicateJobError`: one job per id)."""
        lease = self._leases.get(message.task_id)
        if lease is not None and lease.ended_at is None and not lease.lost:
            await self.ledger.replace_payload(message.task_id, message.message.decode())
            lease.again_ms = delay_ms(message.labels.get("delay"))
            return
        await self._enqueue(message.task_id, message.task_name, message.message,
                            message.labels, replace_finished=True)  # fmt: skip

    async def submit(
        self, task_name: str, job_id: str, args: list[Any], labels: dict[str, str]
    ) -> Enqueued:
        """Enqueue ``task_name(*args)`` as ``job_id`` without a taskiq kicker; the answer
        says where the job stands (the same message, labels and checks as :meth:`kick`)."""
        data = encode_call(job_id, task_name, labels, args)
        return await self._enqueue(job_id, task_name, data, labels)

    async def _enqueue(
        self, job_id: str, task_name: str, data: bytes, labels: dict[str, Any], *,
        replace_finished: bool = False,
    ) -> Enqueued:  # fmt: skip
        if (task := self.find_task(task_name)) is not None:  # as its decorator says
            labels = {**task.labels, **labels}
        options = job_options(labels, self.settings.job_retries)
        try:
            return await self.ledger.enqueue(
                job_id, task_name, data.decode(), priority=options.priority,
                user_id=options.user_id, delay_ms=options.delay_ms,
                max_attempts=options.max_attempts, user_quota=self.settings.user_max_pending,
                ref=options.ref, replace_finished=replace_finished,
                rate_limited=options.rate_limited, start_deadline_ms=options.start_deadline_ms,
                dedup_key=options.dedup_key, max_queued=self.settings.max_queue_length,
                hooks=options.hook_events,
            )  # fmt: skip
        except (RedisError, OSError) as exc:
            raise QueueUnavailableError(f"Redis did not take the job: {exc}") from exc

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """Yield one leased job per call; taskiq asks only when a slot is free."""
        if self._finisher is None:
            await self._start_consuming()
        while True:
            if self._ready:
                yield self._ready.popleft()
                continue
            # The wait for work is inside too: after a restart the blocking connection is
            # the first to find out that Redis went away.
            with self._claim_outage:
                await self._claim_or_wait()
            if self._claim_outage.failed_last:
                await asyncio.sleep(self._claim_outage.retry_s)

    async def _claim_or_wait(self) -> None:
        want = max(1, self.settings.worker_concurrency - len(self._leases))
        # Shielded: a claim cancelled by shutdown still lands in _leases, and is released.
        self._claiming = asyncio.ensure_future(self._claim(want))
        result = await asyncio.shield(self._claiming)
        self._claim_outage.answered()  # now, not after a wait for work of up to 5 s
        if not result.jobs:
            await self._wait(result)

    async def _claim(self, want: int) -> ClaimResult:
        finished = self._finisher.take() if self._finisher else []
        try:
            result = await self.ledger.claim(self.worker_id, want, finished)
        except BaseException:
            if self._finisher:
                self._finisher.put_back(finished)
            raise
        report(finished, result.applied)
        if finished and self._finisher:
            self._finisher.written_elsewhere()
        for job in result.jobs:
            lease = Lease(job.job_id, job.token, job.attempts, job.max_attempts)
            self._leases[job.job_id] = lease
            self._ready.append(self._message(job, lease))
        return result

    def _message(self, job: Claimed, lease: Lease) -> AckableMessage:
        async def ack() -> None:  # taskiq's, at the moment the task's ack_type says
            if (outcome := lease.ack()) is not None:
                self.settle(lease, outcome)

        return AckableMessage(data=job.payload.encode(), ack=ack)

    def settle(self, lease: Lease, outcome: Outcome) -> None:
        """Record the end of ``lease``'s run (once; see ``queue.lease``)."""
        if lease.settled:
            return
        lease.settled = True
        if self._leases.get(lease.job_id) is lease:
            del self._leases[lease.job_id]
        self._settled[lease.job_id] = lease  # for the result backend, which may come later
        while len(self._settled) > self._settled_cap:
            self._settled.popitem(last=False)
        if outcome is lease.outcome:  # the run's own end (not unrunnable, nor unacked)
            log_outcome(lease, outcome, lease.error, lease.ran_s)
        if lease.lost:  # the finish script would refuse it; log_outcome said so
            return
        if self._finisher is None:
            raise QueueUnavailableError("the broker is shut down")
        self._finisher.submit(
            FinishOp(lease.job_id, lease.token, outcome.kind, outcome.value, outcome.error,
                     outcome.detail)
        )  # fmt: skip

    async def _wait(self, result: ClaimResult) -> None:
        if result.status in ("limited", "more"):
            await asyncio.sleep(result.wait_ms / 1000)
            return
        timeout = IDLE_BLOCK_MS
        if result.status == "empty" and result.wait_ms >= 0:
            timeout = min(timeout, result.wait_ms)
        if self._blocking is None:
            raise QueueUnavailableError("the broker is shut down")
        # After a Redis restart this client's pooled connection is dead: the client itself
        # retries once on a fresh one (see redis_conn); a wait only pops wake-up tokens.
        await self.ledger.wait_for_work(self._blocking, timeout)

    async def _deregister(self, ledger: JobLedger) -> None:
        try:
            await ledger.deregister(self.worker_id)
        except (RedisError, OSError) as exc:
            log.warning("could not deregister this worker at shutdown (%s); it leaves the "
                        "live workers within one lease", exc)  # fmt: skip

    async def _release_unfinished(self, ledger: JobLedger) -> None:
        leases = [(lease.job_id, lease.token) for lease in self._leases.values()]
        self._leases.clear()
        self._ready.clear()
        try:
            released = await ledger.release(leases)
        except (RedisError, OSError) as exc:
            log.warning("could not give back %d jobs at shutdown (%s)", len(leases), exc)
        else:
            log.info("gave back %d unstarted jobs at shutdown", released)
