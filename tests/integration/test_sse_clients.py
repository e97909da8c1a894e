"""The events route as SSE clients meet it (httpx-sse's parser; the browser in tests/e2e):
keep-alives that are no events, ids that resume, 204 once a finished job has been heard,
and job-scoped tokens for clients that cannot send headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from httpx_sse import EventSource, ServerSentEvent, aconnect_sse
from redis.asyncio import Redis

from imagequeue_common.queue.keys import QueueKeys
from imagequeue_common.settings import Settings, replace
from tests.support.api import ApiServer
from tests.support.procs import (
    WorkerProcess,
    start_workers,
    wait_until,
    wait_workers_ready,
    worker_env,
)
from tests.support.stub import StubServer

pytestmark = pytest.mark.slow
DEV_KEY = "dev-key-for-the-sse-client-test"
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
TOKEN_TTL_S = 60


@pytest.fixture
def stack(settings: Settings, stub_ai: StubServer, tmp_path: Path) -> Settings:
    stub_ai.configure(time_scale=0.01)
    return replace(settings, ai_generation_api_url=f"{stub_ai.url}/generate",
                   database_url=f"sqlite:///{tmp_path}/db.sqlite",
                   assets_dir=str(tmp_path / "assets"))  # fmt: skip


@pytest.fixture
def api(stack: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    # Two processes: a reconnect may land on the other one, whose reader is elsewhere.
    env = worker_env(stack, api_dev_key=DEV_KEY, api_processes=2, events_keepalive_s=0.05,
                     events_token_ttl_s=TOKEN_TTL_S, api_user_rps=0)  # fmt: skip
    server = ApiServer(env, tmp_path / "api.log").start()
    server.wait_log("all 2 API processes ready")
    yield server
    server.stop()


async def new_job(client: httpx.AsyncClient) -> str:
    character = {"name": "Aria", "personality": {"poseId": "pose-standing"}}
    made = await client.post("/api/v1/characters", headers=AUTH, json=character)
    assert made.status_code == 201, made.text
    job_id: str = made.json()["data"]["imageJob"]["id"]
    return job_id


async def events_of(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> list[ServerSentEvent]:
    """Every event of ``url`` (through httpx-sse) until the server ends the stream."""
    async with aconnect_sse(client, "GET", url, headers=headers or AUTH) as source:
        source.response.raise_for_status()
        return [event async for event in source.aiter_sse()]


def data(event: ServerSentEvent) -> dict[str, Any]:
    decoded: dict[str, Any] = msgspec.json.decode(event.data)
    return decoded


async def test_keepalives_are_comments_that_no_client_sees_as_events(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        job_id = await new_job(client)  # no worker: it waits, and the stream idles
        raw, keepalives = b"", 0
        async with client.stream("GET", f"/api/v1/generations/{job_id}/events",
                                 headers=AUTH) as answer:  # fmt: skip
            assert answer.headers["content-type"].startswith("text/event-stream")
            assert answer.headers["cache-control"] == "no-cache"
            async for chunk in answer.aiter_bytes():
                raw += chunk
                keepalives = raw.count(b": keep-alive\n")
                if keepalives >= 3:
                    break
    assert keepalives >= 3
    parsed = list(EventSource(httpx.Response(200, content=raw, headers={
        "content-type": "text/event-stream"})).iter_sse())  # fmt: skip
    assert [(e.event, data(e)["state"]) for e in parsed] == [("state", "waiting")]
    assert parsed[0].id  # a stream id to resume from
    assert parsed[0].retry == 3000


async def test_last_event_id_replays_what_was_missed_then_204(
    api: ApiServer, workers: list[WorkerProcess], redis: Redis, stack: Settings
) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        job_id = await new_job(client)
        url = f"/api/v1/generations/{job_id}/events"
        async with aconnect_sse(client, "GET", url, headers=AUTH) as source:
            first = await anext(source.aiter_sse())  # then the client goes away
        assert data(first)["state"] == "waiting"

        start_workers(workers, stack)
        await wait_workers_ready(redis, stack, 1)

        async def finished() -> bool:
            return bool((await client.get(f"/api/v1/generations/{job_id}", headers=AUTH))
                        .json()["data"]["state"] == "completed")  # fmt: skip

        await wait_until(finished, 30, "the job to complete while nobody listened")
        missed = await events_of(client, url, {**AUTH, "Last-Event-ID": first.id})
        assert [data(e)["progress"] for e in missed if e.event == "progress"] == [10, 80, 100]
        assert (missed[-1].event, data(missed[-1])["state"]) == ("state", "completed")
        ids = [tuple(map(int, e.id.split("-"))) for e in missed]
        assert ids == sorted(ids)
        assert ids[0] > tuple(map(int, first.id.split("-")))

        again = await client.get(url, headers={**AUTH, "Last-Event-ID": missed[-1].id})
        assert (again.status_code, again.content) == (204, b"")
        fresh = await events_of(client, url)  # no id: the state once, then the end
        assert [(e.event, data(e)["state"]) for e in fresh] == [("state", "completed")]
        assert (await client.get(url, headers={**AUTH, "Last-Event-ID": fresh[-1].id})
                ).status_code == 204  # fmt: skip
        bogus = await events_of(client, url, {**AUTH, "Last-Event-ID": "not-an-id"})
        assert [data(e)["state"] for e in bogus] == ["completed"]  # read as a first visit


async def test_a_job_scoped_token_opens_only_that_jobs_events(
    api: ApiServer, redis: Redis, stack: Settings
) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        job_id, other_id = await new_job(client), await new_job(client)
        minted = await client.post(f"/api/v1/generations/{job_id}/events-token", headers=AUTH)
        assert minted.status_code == 201, minted.text
        grant = minted.json()["data"]
        token = grant["token"]
        assert grant["expiresIn"] == TOKEN_TTL_S
        assert grant["eventsUrl"] == f"/api/v1/generations/{job_id}/events?token={token}"
        async with aconnect_sse(client, "GET", grant["eventsUrl"]) as source:
            assert source.response.status_code == 200
            assert data(await anext(source.aiter_sse()))["id"] == job_id

        refused = [
            await client.get(f"/api/v1/generations/{other_id}/events", params={"token": token}),
            await client.get(f"/api/v1/generations/{job_id}/events", params={"token": "iqe_x"}),
            await client.get(f"/api/v1/generations/{job_id}/events"),
            await client.get(f"/api/v1/generations/{job_id}", params={"token": token}),
        ]
        assert [r.status_code for r in refused] == [401, 401, 401, 401]
        assert "events token" in refused[0].json()["detail"]
        assert (await client.post(f"/api/v1/generations/{other_id}/events-token")
                ).status_code == 401  # minting needs the API key  # fmt: skip

        keys = QueueKeys.for_queue(stack.queue_name)
        held = [k async for k in redis.scan_iter(match=f"{keys.prefix}streamtoken:*")]
        assert len(held) == 1
        assert token not in held[0]  # stored by its hash only
        assert 0 < await redis.ttl(held[0]) <= TOKEN_TTL_S
        await redis.delete(held[0])  # as its TTL would
        gone = await client.get(grant["eventsUrl"])
        assert gone.status_code == 401
