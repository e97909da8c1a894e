"""The API and workers refuse a Redis that may evict keys (it would drop jobs)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagequeue_common.embedded_redis import EmbeddedRedis
from imagequeue_common.errors import SettingsError
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings
from tests.support.procs import ROOT


@pytest.fixture
def evicting_redis(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    yield url
    server.stop()


async def set_policy(url: str, policy: str) -> None:
    client = command_client(url)
    await client.config_set("maxmemory-policy", policy)
    await client.aclose()


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl"])
async def test_broker_refuses_an_evicting_redis(evicting_redis: str, policy: str) -> None:
    await set_policy(evicting_redis, policy)
    broker = EngineBroker(Settings(redis_url=evicting_redis), evicting_redis)
    with pytest.raises(SettingsError, match=f"maxmemory-policy '{policy}'"):
        await broker.startup()
    await set_policy(evicting_redis, "noeviction")
    await broker.startup()  # the same broker starts once the policy is safe
    await broker.shutdown()


@pytest.mark.parametrize(
    "command", [["imagequeue_worker", "run"], ["imagequeue_api", "serve"]], ids=["worker", "api"]
)
def test_processes_exit_with_the_reason(evicting_redis: str, command: list[str]) -> None:
    asyncio.run(set_policy(evicting_redis, "allkeys-lru"))
    env = {**os.environ, "REDIS_URL": evicting_redis, "AI_GENERATION_ENABLED": "false",
           "API_PORT": "1", "PYTHONPATH": str(ROOT)}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", *command],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "cannot start: Redis has maxmemory-policy 'allkeys-lru'" in done.stderr
