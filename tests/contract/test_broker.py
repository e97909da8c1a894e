"""taskiq's broker contract on EngineBroker, outside a worker process: what ``kiq`` sends,
``listen()`` gives back, and an acked message is not delivered again."""

from __future__ import annotations

import asyncio

from taskiq.kicker import AsyncKicker

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings


async def test_listen_outside_a_worker_gives_what_was_kicked(settings: Settings) -> None:
    broker = EngineBroker(settings, settings.redis_url_or_default)
    await broker.startup()
    try:
        assert not broker.is_worker_process
        kicker: AsyncKicker[..., object] = AsyncKicker("someone.else:task", broker, {"tag": "x"})
        task = await kicker.kiq(1, b=2)
        messages = broker.listen()
        received = await asyncio.wait_for(anext(messages), 10)
        message = broker.formatter.loads(received.data)
        assert (message.task_id, message.task_name) == (task.task_id, "someone.else:task")
        assert (message.args, message.kwargs, message.labels["tag"]) == ([1], {"b": 2}, "x")
        assert (await broker.ledger.get_job(task.task_id)).state is JobState.ACTIVE
        await received.ack()  # type: ignore[misc]
        await messages.aclose()
    finally:
        await broker.shutdown()
    # Acked: not in the queue again (nothing here ran it, so it ends as not runnable).
    check = EngineBroker(settings, settings.redis_url_or_default)
    await check.startup()
    try:
        assert (await check.ledger.get_job(task.task_id)).state is JobState.FAILED
    finally:
        await check.shutdown()
