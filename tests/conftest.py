"""Shared fixtures: a real Redis (private unless TEST_REDIS_URL is set) and isolated queues."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from imagequeue_common.embedded_redis import EmbeddedRedis
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings
from imagequeue_worker.app import build_broker
from tests.support.cluster import ClusterSet
from tests.support.procs import WorkerProcess
from tests.support.runpod_sdk import RunPodSDKServer
from tests.support.stub import StubServer
from tests.support.tasks import register_test_tasks

STUB_TIME_SCALE = "0.002"
"""The stub's 30-60 s GPU latency becomes 60-120 ms in tests."""


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TEST_REDIS_URL when set; a private 3-primary cluster with TEST_REDIS_CLUSTER=1 (``just
    test-cluster``); else a private redis-server for this session."""
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    if os.environ.get("TEST_REDIS_CLUSTER") == "1":
        cluster = ClusterSet(tmp_path_factory.mktemp("cluster"))
        yield cluster.url
        cluster.stop()
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def stub_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StubServer]:
    """``python -m loadtest.stub_ai`` on a free port; its log under ``$IQ_TEST_LOGS`` if set."""
    logs = os.environ.get("IQ_TEST_LOGS")
    log_dir = Path(logs) if logs else tmp_path_factory.mktemp("stub_ai")
    server = StubServer(log_dir / "stub_ai.log", env={"STUB_TIME_SCALE": STUB_TIME_SCALE})
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def runpod_sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunPodSDKServer]:
    """RunPod's own SDK test server with :mod:`tests.support.runpod_handler`, one per session;
    its log under ``$IQ_TEST_LOGS`` if set."""
    logs = os.environ.get("IQ_TEST_LOGS")
    log_dir = Path(logs) if logs else tmp_path_factory.mktemp("runpod_sdk")
    server = RunPodSDKServer(log_dir / "runpod_sdk.log")
    yield server.start()
    server.stop()


@pytest.fixture
def stub_ai(stub_server: StubServer) -> StubServer:
    """The session's stub AI server with its start config, nothing in flight, stats cleared."""
    stub_server.configure(**{**stub_server.initial_config, "script": []})
    stub_server.wait_idle()
    stub_server.reset()
    return stub_server


@pytest.fixture
def queue_name() -> str:
    """A queue of this test's own: isolation without FLUSHALL."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(redis_url: str, queue_name: str) -> Settings:
    """Fast settings: no rate limit, short leases and backoff."""
    return Settings(
        redis_url=redis_url,
        queue_name=queue_name,
        rate_limit_max=0,
        backoff_delay_ms=100,
        lease_ms=2000,
        worker_concurrency=5,
    )


@pytest.fixture
async def redis(redis_url: str, queue_name: str) -> AsyncIterator[Redis]:
    """A client for assertions; deletes this test's keys afterwards."""
    client = command_client(redis_url)
    yield client
    keys = [k for tag in (queue_name, f"{queue_name}-webhooks")
            async for k in client.scan_iter(match=f"*{{{tag}}}*", count=1000)]  # fmt: skip
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def broker(settings: Settings, redis: Redis) -> AsyncIterator[EngineBroker]:
    """A started client-side broker (the api's view) with the test tasks registered."""
    b = build_broker(settings)
    register_test_tasks(b)
    await b.startup()
    yield b
    await b.shutdown()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test starts; every one is stopped at the end of the test."""
    started: list[WorkerProcess] = []
    yield started
    for proc in started:
        proc.stop()
