"""taskiq's result contract on EngineBroker: results and errors come back as taskiq carries
them (the exception's own type, a pydantic model as its JSON, parsed by the caller's return
type), a plain task is not retried unless it asks, ``NoResultError`` is a finished run, and
``ProgressTracker`` progress is kept. Real ``taskiq worker`` and ``imagequeue-worker run``
processes on real Redis; and the result backend on its own, for any task id."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel
from redis.asyncio import Redis
from taskiq import AsyncResultBackend, TaskiqResult
from taskiq.depends.progress_tracker import TaskProgress, TaskState
from taskiq.kicker import AsyncKicker

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings
from tests.contract.test_acks import MODULE, kicker, runs, settled
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow


class Thumbnail(BaseModel):
    """The caller's view of the task's return type (same fields as user_tasks.Thumbnail)."""

    url: str
    size: int


async def test_a_model_goes_in_and_comes_back(worker: str, client: EngineBroker) -> None:
    kick: AsyncKicker[..., Thumbnail] = AsyncKicker(
        f"{MODULE}:resize", client, {}, return_type=Thumbnail
    )
    task = await kick.kiq({"url": "a.png", "size": 64})
    result = await task.wait_result(timeout=30)
    assert not result.is_err, result.error
    assert result.return_value == Thumbnail(url="a.png", size=128)


async def test_a_plain_error_comes_back_as_itself_after_one_run(
    worker: str, client: EngineBroker, redis: Redis, settings: Settings
) -> None:
    task = await kicker(client, "refuses").kiq()
    result = await task.wait_result(timeout=30)
    assert result.is_err
    assert isinstance(result.error, LookupError)
    assert str(result.error) == "no such image: a.png"
    with pytest.raises(LookupError):
        result.raise_for_error()
    job = await settled(client, task.task_id)
    assert (job.state, job.attempts, job.max_attempts) == (JobState.FAILED, 1, 1)
    assert await runs(redis, settings, task.task_id) == 1


async def test_no_result_is_a_finished_run(
    worker: str, client: EngineBroker, redis: Redis, settings: Settings
) -> None:
    task = await kicker(client, "wants_no_result").kiq()

    async def done() -> bool:
        return (await client.ledger.get_job(task.task_id)).state.is_final

    await wait_until(done, 30, "the run to end")
    assert (await client.ledger.get_job(task.task_id)).state is JobState.COMPLETED
    assert await runs(redis, settings, task.task_id) == 1


async def test_progress_is_kept_while_the_task_runs(
    worker: str, client: EngineBroker, redis: Redis, settings: Settings
) -> None:
    task = await kicker(client, "reports").kiq()

    async def reported() -> bool:
        return await task.get_progress() is not None

    await wait_until(reported, 30, "the task's progress")
    progress = await task.get_progress()
    assert progress is not None
    assert (progress.state, progress.meta) == (TaskState.STARTED, {"done": 3, "of": 4})
    assert not await task.is_ready()
    await redis.rpush(f"contract:{{{settings.queue_name}}}:go", 1)
    assert (await task.wait_result(timeout=30)).return_value == 4


# The result backend on its own (as taskiq-redis's own backend tests use theirs).


async def test_any_id_stores_and_returns_a_result(client: EngineBroker) -> None:
    backend: AsyncResultBackend[Any] = client.result_backend
    assert not await backend.is_result_ready("not-a-job")
    result: TaskiqResult[dict[str, int]] = TaskiqResult(
        is_err=False, log="a line", return_value={"n": 1}, execution_time=0.5,
        labels={"k": "v"},
    )  # fmt: skip
    await backend.set_result("not-a-job", result)
    assert await backend.is_result_ready("not-a-job")
    back = await backend.get_result("not-a-job")
    assert (back.is_err, back.return_value, back.execution_time, back.labels, back.log) == (
        False, {"n": 1}, 0.5, {"k": "v"}, None
    )  # fmt: skip
    assert (await backend.get_result("not-a-job", with_logs=True)).log == "a line"


async def test_an_error_result_keeps_its_type(client: EngineBroker) -> None:
    backend: AsyncResultBackend[Any] = client.result_backend
    failed: TaskiqResult[None] = TaskiqResult(
        is_err=True, return_value=None, execution_time=0.1, error=KeyError("image")
    )
    await backend.set_result("broken", failed)
    back = await backend.get_result("broken")
    assert back.is_err
    assert isinstance(back.error, KeyError)


async def test_progress_of_any_id(client: EngineBroker) -> None:
    backend: AsyncResultBackend[Any] = client.result_backend
    assert await backend.get_progress("p1") is None
    await backend.set_progress("p1", TaskProgress(state=TaskState.RETRY, meta={"try": 2}))
    progress = await backend.get_progress("p1")
    assert progress is not None
    assert (progress.state, progress.meta) == (TaskState.RETRY, {"try": 2})


async def test_a_result_reads_the_same_every_time_and_at_once(client: EngineBroker) -> None:
    # Results stay until the queue's retention removes them (KEEP_COMPLETED_MS for any
    # id's result): reading one does not consume it, also with ten readers at once.
    backend: AsyncResultBackend[Any] = client.result_backend
    result: TaskiqResult[int] = TaskiqResult(
        is_err=True, log="My Log", return_value=11, execution_time=112.2
    )
    await backend.set_result("read-twice", result)
    first = await backend.get_result("read-twice", with_logs=True)
    reads = await asyncio.gather(
        *[backend.get_result("read-twice", with_logs=True) for _ in range(10)]
    )
    assert all(read == first for read in reads)
    assert (first.is_err, first.return_value, first.execution_time, first.log) == (
        True, 11, 112.2, "My Log"
    )  # fmt: skip


async def test_a_later_progress_replaces_the_earlier(client: EngineBroker) -> None:
    backend: AsyncResultBackend[Any] = client.result_backend
    quarter = TaskProgress(state=TaskState.STARTED, meta={"message": "quarter way", "pct": 25})
    half = TaskProgress(state=TaskState.STARTED, meta={"message": "half way", "pct": 50})
    await backend.set_progress("p2", quarter)
    assert await backend.get_progress("p2") == quarter
    await backend.set_progress("p2", half)
    assert await backend.get_progress("p2") == half
