"""A run that sends its own task id again — taskiq's ``context.requeue()`` and its
``SmartRetryMiddleware`` — is delivered again with the new message, under both CLIs."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings
from tests.contract.test_acks import kicker, runs

pytestmark = pytest.mark.slow


async def test_requeue_runs_the_task_again_with_the_new_labels(
    worker: str, client: EngineBroker, redis: Redis, settings: Settings
) -> None:
    task = await kicker(client, "requeues_once").kiq()
    result = await task.wait_result(timeout=30)
    assert (result.is_err, result.return_value) == (False, "1"), result.error
    assert await runs(redis, settings, task.task_id) == 2
    assert (await client.ledger.get_job(task.task_id)).state is JobState.COMPLETED


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
    assert (await client.ledger.get_job(task.task_id)).state is JobState.FAILED
