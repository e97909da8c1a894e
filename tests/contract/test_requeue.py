"""Kicking a task id again: a run that sends its own id — taskiq's ``context.requeue()``
and its ``SmartRetryMiddleware`` — is delivered again with the new message, a finished
id starts afresh, a waiting one is refused (one job per id); under both CLIs."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from taskiq.exceptions import SendTaskError

from imagequeue_common.contracts import JobState
from imagequeue_common.errors import DuplicateJobError
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings
from tests.contract.test_acks import kicker, runs, settled

pytestmark = pytest.mark.slow


async def test_requeue_runs_the_task_again_with_the_new_labels(
    worker: str, client: EngineBroker, redis: Redis, settings: Settings
) -> None:
    task = await kicker(client, "requeues_once").kiq()
    result = await task.wait_result(timeout=30)
    assert (result.is_err, result.return_value) == (False, "1"), result.error
    assert await runs(redis, settings, task.task_id) == 2
    assert (await settled(client, task.task_id)).state is JobState.COMPLETED


async def test_smart_retry_middleware_retries_until_it_works(
    worker: str, client: EngineBroker, redis: Redis, settings: Settings
) -> None:
    task = await kicker(client, "fails_twice", retry_on_error="True", max_retries="3").kiq()
    result = await task.wait_result(timeout=30)
    assert (result.is_err, result.return_value) == (False, 3), result.error
    assert await runs(redis, settings, task.task_id) == 3


async def test_smart_retry_middleware_gives_up_with_the_error(
    worker: str, client: EngineBroker, redis: Redis, settings: Settings
) -> None:
    task = await kicker(client, "always_fails", retry_on_error="True", max_retries="2").kiq()
    result = await task.wait_result(timeout=30)
    assert result.is_err
    assert isinstance(result.error, PermissionError)
    assert await runs(redis, settings, task.task_id) == 2
    assert (await settled(client, task.task_id)).state is JobState.FAILED


async def test_kicking_a_finished_id_again_runs_it_afresh(
    worker: str, client: EngineBroker, redis: Redis, settings: Settings
) -> None:
    first = await kicker(client, "add").with_task_id("same-id").kiq(1, 2)
    assert (await first.wait_result(timeout=30)).return_value == 3
    again = await kicker(client, "add").with_task_id("same-id").kiq(20, 2)
    assert again.task_id == "same-id"
    assert (await again.wait_result(timeout=30)).return_value == 22
    job = await settled(client, "same-id")
    assert (job.state, job.attempts) == (JobState.COMPLETED, 1)  # a fresh job, not a retry
    assert await runs(redis, settings, "same-id") == 2
    assert (await client.ledger.stats()).completed == 1  # one job of that id, counted once


async def test_kicking_an_id_that_is_still_waiting_is_refused(client: EngineBroker) -> None:
    await kicker(client, "add").with_task_id("busy-id").kiq(1, 2)  # no worker: it waits
    with pytest.raises(SendTaskError) as refused:  # taskiq's wrapper of a broker's refusal
        await kicker(client, "add").with_task_id("busy-id").kiq(3, 4)
    assert isinstance(refused.value.__cause__, DuplicateJobError)
    job = await client.ledger.get_job("busy-id")
    assert client.formatter.loads(job.payload.encode()).args == [1, 2]  # the first, unchanged
