"""Tasks for tests, registered next to the real worker tasks in real worker processes.

``python -m imagequeue_worker run --broker tests.support.tasks:create_broker`` runs the real
engine and the real taskiq receiver; these tasks only record what happened to them in
Redis (under ``test:{<queue>}:``) so that tests can check it from outside.
"""

from __future__ import annotations

import asyncio

from imagequeue_common.errors import RetryableJobError, TerminalJobError
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.context import CurrentJob
from imagequeue_common.queue.labels import ENGINE_LABELS
from imagequeue_worker import app as worker_app

RECORD = "test.record"
FAIL = "test.fail"
TERMINAL = "test.terminal"
FLAKY = "test.flaky"
STEPS = "test.steps"


def probe_key(queue: str, name: str) -> str:
    """A key the test tasks write to, next to the queue's own keys."""
    return f"test:{{{queue}}}:{name}"


def create_broker() -> EngineBroker:
    """Worker entry point: the real broker and tasks plus the test tasks."""
    broker = worker_app.create_broker()
    register_test_tasks(broker)
    return broker


def register_test_tasks(broker: EngineBroker) -> None:
    """Register the test tasks on ``broker``."""
    queue = broker.settings.queue_name

    async def note_start(job_id: str) -> None:
        client = broker.ledger.client
        seconds, micros = await client.time()
        async with client.pipeline(transaction=False) as pipe:
            pipe.hincrby(probe_key(queue, "runs"), job_id, 1)
            pipe.rpush(probe_key(queue, "order"), job_id)
            pipe.rpush(probe_key(queue, f"starts:{job_id}"), seconds * 1000 + micros // 1000)
            pipe.incr(probe_key(queue, "running"))
            running = (await pipe.execute())[3]
        await client.zadd(probe_key(queue, "peak"), {"running": running}, gt=True)

    async def note_end(job_id: str) -> None:
        client = broker.ledger.client
        seconds, micros = await client.time()
        async with client.pipeline(transaction=False) as pipe:
            pipe.decr(probe_key(queue, "running"))
            pipe.rpush(probe_key(queue, f"ends:{job_id}"), seconds * 1000 + micros // 1000)
            pipe.hincrby(probe_key(queue, "done"), job_id, 1)
            await pipe.execute()

    @broker.task(task_name=RECORD, **ENGINE_LABELS)
    async def record(job: CurrentJob, sleep_ms: int = 0, value: int = 0) -> int:
        await note_start(job.id)
        if sleep_ms:
            await asyncio.sleep(sleep_ms / 1000)
        await note_end(job.id)
        return value

    @broker.task(task_name=FAIL, **ENGINE_LABELS)
    async def fail(job: CurrentJob, retry_after_s: float | None = None) -> None:
        await note_start(job.id)
        await note_end(job.id)
        raise RetryableJobError(f"boom on attempt {job.attempt}", retry_after_s=retry_after_s)

    @broker.task(task_name=TERMINAL, **ENGINE_LABELS)
    async def terminal(job: CurrentJob) -> None:
        await note_start(job.id)
        await note_end(job.id)
        raise TerminalJobError("400 Bad Request: the prompt was refused")

    @broker.task(task_name=FLAKY, **ENGINE_LABELS)
    async def flaky(job: CurrentJob, fail_runs: int) -> str:
        await note_start(job.id)
        await note_end(job.id)
        if job.attempt <= fail_runs:
            raise ConnectionError(f"upstream reset on attempt {job.attempt}")
        return "ok"

    @broker.task(task_name=STEPS, **ENGINE_LABELS)
    async def steps(job: CurrentJob, steps: int, step_ms: int) -> int:
        await note_start(job.id)
        try:
            for i in range(1, steps + 1):
                await asyncio.sleep(step_ms / 1000)
                await job.progress(min(100, i * 100 // steps), f"step {i}")
        finally:
            await note_end(job.id)
        return steps
