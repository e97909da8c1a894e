"""The API in-process (Litestar's test client, real Redis and SQLite) and keys per tier."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from imagequeue_api.apikeys import ApiKeyStore
from imagequeue_api.app import create_app
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings, replace

MakeKey = Callable[..., Awaitable[dict[str, str]]]


@pytest.fixture
def api_settings(settings: Settings, tmp_path: Path) -> Settings:
    return replace(
        settings,
        database_url=f"sqlite:///{tmp_path}/api.db",
        assets_dir=str(tmp_path / "assets"),
        api_user_rps=0,
        ai_generation_api_url="http://127.0.0.1:9/unused",
    )


@pytest.fixture
def stack(settings: Settings, tmp_path: Path, redis: Redis) -> Settings:
    """Settings for an API server process of this test's own (its database, its images)."""
    del redis  # cleans this test's keys afterwards
    return replace(settings, database_url=f"sqlite:///{tmp_path}/db.sqlite",
                   assets_dir=str(tmp_path / "assets"))  # fmt: skip


@pytest.fixture
def app(api_settings: Settings) -> Litestar:
    return create_app(api_settings)


@pytest.fixture
async def client(app: Litestar, redis: Redis) -> AsyncIterator[AsyncTestClient[Litestar]]:
    del redis  # cleans this test's keys afterwards
    async with AsyncTestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def ledger(redis: Redis, api_settings: Settings) -> JobLedger:
    """The queue as the test sees it (its own client: the app runs on another event loop)."""
    return JobLedger(redis, api_settings)


@pytest.fixture
def make_key(redis: Redis, api_settings: Settings) -> MakeKey:
    """``await make_key("alice", "premium")`` → headers carrying a fresh key of that tier."""

    async def make(user_id: str = "alice", tier: str = "regular") -> dict[str, str]:
        key, _ = await ApiKeyStore(redis, api_settings.queue_name).create(user_id, tier)
        return {"Authorization": f"Bearer {key}"}

    return make
