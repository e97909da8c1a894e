"""The pipeline tests' shared fixtures: the store and the API's side of the broker, both on
the module's own ``pipe_settings``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings
from imagequeue_common.store import CharacterStore, open_store


@pytest.fixture
async def store(pipe_settings: Settings) -> AsyncIterator[CharacterStore]:
    """The module's store (``pipe_settings.database_url``), open while the test runs."""
    opened = await open_store(pipe_settings.database_url)
    yield opened
    await opened.close()


@pytest.fixture
async def client(pipe_settings: Settings, redis: Redis) -> AsyncIterator[EngineBroker]:
    """The api's side: a started broker that enqueues and reads the ledger."""
    del redis  # cleans this test's keys afterwards
    broker = EngineBroker(pipe_settings, pipe_settings.redis_url_or_default)
    await broker.startup()
    yield broker
    await broker.shutdown()
