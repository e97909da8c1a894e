"""Fixtures of the taskiq contract tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[EngineBroker]:
    """The client side (an API process's view): kicks by task name, reads results."""
    broker = EngineBroker(settings, settings.redis_url_or_default)
    await broker.startup()
    yield broker
    await broker.shutdown()
