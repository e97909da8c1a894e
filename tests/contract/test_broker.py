"""taskiq's broker contract on EngineBroker, outside a worker process: what ``kiq`` sends,
``listen()`` gives back, and an acked message is not delivered again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

from taskiq import AckableMessage
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


async def _first(messages: AsyncGenerator[AckableMessage, None]) -> AckableMessage:
    return await anext(messages)


async def test_one_kick_reaches_exactly_one_of_two_listeners(settings: Settings) -> None:
    # taskiq-redis's queue brokers promise it: two consumers, one message, one delivery.
    brokers = [EngineBroker(settings, settings.redis_url_or_default) for _ in range(3)]
    for broker in brokers:
        await broker.startup()
    sender, *consumers = brokers
    streams = [consumer.listen() for consumer in consumers]
    try:
        waiting = [asyncio.create_task(_first(stream)) for stream in streams]
        kicker: AsyncKicker[..., object] = AsyncKicker("someone.else:task", sender, {})
        first = await kicker.kiq()
        done, pending = await asyncio.wait(waiting, timeout=10, return_when="FIRST_COMPLETED")
        assert len(done) == 1
        [received] = [task.result() for task in done]
        assert sender.formatter.loads(received.data).task_id == first.task_id
        # The other listener is still waiting, and gets the next message, not this one.
        second = await kicker.kiq()
        [other] = pending
        again = await asyncio.wait_for(other, 10)
        assert sender.formatter.loads(again.data).task_id == second.task_id
        for message in (received, again):
            await message.ack()  # type: ignore[misc]
    finally:
        for stream in streams:
            await stream.aclose()
        for broker in brokers:
            await broker.shutdown()


async def test_fifty_kicks_at_once_are_each_delivered_once(settings: Settings) -> None:
    sender = EngineBroker(settings, settings.redis_url_or_default)
    consumer = EngineBroker(settings, settings.redis_url_or_default)
    for broker in (sender, consumer):
        await broker.startup()
    stream = consumer.listen()
    try:
        kicker: AsyncKicker[..., object] = AsyncKicker("someone.else:task", sender, {})
        sent = await asyncio.gather(*[kicker.kiq(i) for i in range(50)])
        seen = []
        for _ in range(50):
            message = await asyncio.wait_for(_first(stream), 10)
            seen.append(sender.formatter.loads(message.data).task_id)
            await message.ack()  # type: ignore[misc]
        assert sorted(seen) == sorted(task.task_id for task in sent)
        assert (await consumer.ledger.stats()).waiting == 0
    finally:
        await stream.aclose()
        for broker in (sender, consumer):
            await broker.shutdown()
