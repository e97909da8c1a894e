"""The SSE event hub on real Redis: it reads the queue's stream only while someone listens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from imagequeue_api.events import EventHub
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.redis_conn import blocking_client
from imagequeue_common.settings import Settings
from tests.support.cluster import every_client
from tests.support.procs import wait_until

HUB = "iq-test-event-hub"


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[EventHub]:
    client = blocking_client(redis_url, name=HUB)
    events = EventHub(client, "unused", block_ms=100)
    yield events
    await events.stop()
    await client.aclose()


SETUP = {"client", "client|setname", "client|setinfo", "cluster", "command"}
"""What a connection sends before any command of its user: its name, library info (which
Redis 7.0 refuses, so its name shows as plain ``client``), and on a cluster the slots."""


async def hub_commands(redis: Redis) -> set[str]:
    """The last command of each of the hub's connections, other than their setup."""
    named = [c for c in await every_client(redis) if c.get("name") == HUB]
    return {str(c.get("cmd", "")) for c in named} - SETUP


async def test_reads_only_while_subscribed_and_misses_nothing_after_subscribing(
    hub: EventHub, redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, settings)
    hub.stream = ledger.keys.events
    await ledger.enqueue("before", "t", "{}")  # an event nobody follows
    hub.start()
    for _ in range(15):  # three of its block periods: an idle hub sends nothing at all
        assert await hub_commands(redis) == set()
        await asyncio.sleep(0.02)

    async with hub.subscribe("j1") as queue:
        await ledger.enqueue("j1", "t", "{}")  # right after subscribing: delivered
        entry_id, event = await asyncio.wait_for(queue.get(), 5)
        assert (event["job"], event["event"]) == ("j1", "waiting")
        assert hub.position == entry_id  # what the reader took last
        assert queue.empty()  # "before" was not for j1, and older entries are not replayed

    async def idle() -> bool:  # the reader's last blocking read ended and none follows
        return await hub_commands(redis) == {"xread"} and not any(
            c.get("name") == HUB and "b" in str(c.get("flags", ""))
            for c in await every_client(redis)
        )

    await wait_until(idle, 5, "the hub to stop reading once nobody is subscribed")
    async with hub.subscribe("j2") as queue:  # following again from now
        await ledger.enqueue("j2", "t", "{}")
        assert (await asyncio.wait_for(queue.get(), 5))[1]["job"] == "j2"


async def test_replay_gives_one_jobs_entries_after_an_id(
    hub: EventHub, redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, settings)
    hub.stream = ledger.keys.events
    for n in range(5):
        await ledger.enqueue(f"a{n}", "t", "{}")
        await ledger.enqueue(f"b{n}", "t", "{}")
    every: list[tuple[str, dict[str, str]]] = await redis.xrange(ledger.keys.events)  # type: ignore[assignment]
    a_ids = [entry_id for entry_id, fields in every if fields["job"] == "a3"]
    assert [e for e, _ in await hub.replay("a3", "0-0")] == a_ids
    assert await hub.replay("a3", a_ids[-1]) == []  # nothing after its last entry
    assert await hub.replay("a3", every[-1][0]) == []
    hub.replay_max = 3  # the stream's cap bounds the scan
    assert await hub.replay("a3", "0-0") == []
