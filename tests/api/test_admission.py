"""Admission control, deadlines to start and de-duplication through the HTTP API: a refusal
is a 429 with ``Retry-After`` and the numbers behind it, and stores nothing; an expired job
says so on its character, its generation and its event stream; 50 identical requests at
once queue one job."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from imagequeue_api.app import create_app
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings, replace
from tests.api.conftest import MakeKey
from tests.support.procs import WorkerProcess, start_workers, wait_workers_ready

Client = AsyncTestClient[Litestar]
BODY = {"name": "Aria", "personality": {"poseId": "pose-standing"}}


async def create(client: Client, headers: dict[str, str], **extra: Any) -> Any:
    return await client.post("/api/v1/characters", json={**BODY, **extra}, headers=headers)


async def count_characters(client: Client, headers: dict[str, str]) -> int:
    page = (await client.get("/api/v1/characters", headers=headers)).json()["data"]
    return int(page["total"])


async def test_a_full_queue_refuses_before_storing_the_character(
    api_settings: Settings, redis: Redis, make_key: MakeKey
) -> None:
    settings = replace(api_settings, max_queue_length=2, metrics_token="m" * 32)
    ledger = JobLedger(redis, settings)
    alice = await make_key("alice")
    async with AsyncTestClient(create_app(settings)) as client:
        first = (await create(client, alice)).json()["data"]
        assert (await create(client, alice)).status_code == 201
        refused = await create(client, alice)
        assert refused.status_code == 429, refused.text
        problem = refused.json()
        assert problem["type"] == "/problems/queue-full"
        assert (problem["queued"], problem["maxQueueLength"]) == (2, 2)
        assert int(refused.headers["Retry-After"]) >= 1
        assert await count_characters(client, alice) == 2
        assert (await ledger.stats()).waiting == 2
        # The same character and pose again is answered with its job: nothing is added.
        again = {"characterId": first["_id"]}
        same = await client.post("/api/v1/generations", json=again, headers=alice)
        assert same.status_code == 200, same.text
        assert same.json()["data"]["id"] == first["imageJob"]["id"]
        forced = await client.post(
            "/api/v1/generations", json={**again, "deduplicate": False}, headers=alice
        )
        assert forced.status_code == 429
        metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {'m' * 32}"})
        assert 'imagequeue_admission_refusals_total{reason="queue_length"} 2' in metrics.text
        assert 'imagequeue_admission_refusals_total{reason="predicted_wait"} 0' in metrics.text


@pytest.mark.slow
async def test_the_predicted_wait_refuses_a_flooder_and_admits_a_newcomer(
    api_settings: Settings, redis: Redis, make_key: MakeKey, workers: list[WorkerProcess]
) -> None:
    # One live worker (5 slots) on a paused queue: nothing runs, and the ETA's rates are the
    # seed's 45 s per image over 5 slots. A flooder's 11th job would have 10 ahead of it:
    # two rounds of 5, 90 s before it starts, over the 60 s allowed. A newcomer's first job
    # has one turn ahead of it (fair share): it starts with the first round.
    settings = replace(api_settings, max_queue_wait_s=60, rate_limit_max=0)
    ledger = JobLedger(redis, settings)
    await ledger.pause()
    start_workers(workers, settings, count=1)
    await wait_workers_ready(redis, settings, 1)
    flooder, newcomer = await make_key("flooder"), await make_key("newcomer")
    async with AsyncTestClient(create_app(settings)) as client:
        for _ in range(10):
            made = await create(client, flooder)
            assert made.status_code == 201, made.text
        refused = await create(client, flooder)
        assert refused.status_code == 429, refused.text
        problem = refused.json()
        assert problem["type"] == "/problems/queue-wait"
        assert (problem["position"], problem["maxQueueWaitSeconds"]) == (10, 60)
        assert problem["predictedWaitSeconds"] == pytest.approx(90, abs=1)
        assert int(refused.headers["Retry-After"]) == pytest.approx(30, abs=1)
        assert await count_characters(client, flooder) == 10
        welcome = await create(client, newcomer)
        assert welcome.status_code == 201, welcome.text
        assert welcome.json()["data"]["imageJob"]["position"] == 1
    assert (await ledger.metrics()).refused_wait == 1
    assert (await ledger.stats()).waiting == 11


async def wait_for_state(ledger: JobLedger, job_id: str, state: str) -> None:
    """Run the heartbeat's sweep until the job is in ``state`` (5 s at most)."""
    limit = time.monotonic() + 5
    while (await ledger.get_job(job_id)).state != state:
        assert time.monotonic() < limit, f"job {job_id} never became {state}"
        await ledger.recover_stalled()
        await asyncio.sleep(0.01)


async def test_an_expired_job_says_so_everywhere(
    client: Client, ledger: JobLedger, make_key: MakeKey
) -> None:
    alice = await make_key("alice")
    made = await create(client, alice, startDeadlineSeconds=0.05)
    assert made.status_code == 201, made.text
    character = made.json()["data"]
    job_id = character["imageJob"]["id"]
    job = (await client.get(f"/api/v1/generations/{job_id}", headers=alice)).json()["data"]
    assert job["startBy"] == pytest.approx(job["createdAt"] + 0.05, abs=0.002)
    await wait_for_state(ledger, job_id, "expired")
    job = (await client.get(f"/api/v1/generations/{job_id}", headers=alice)).json()["data"]
    assert (job["state"], job["lastError"], job["position"]) == (
        "expired", "not started before its deadline", None)  # fmt: skip
    read = (await client.get(f"/api/v1/characters/{character['_id']}", headers=alice)).json()
    assert read["data"]["imageJob"]["status"] == "expired"
    stats = (await client.get("/api/v1/queue/stats", headers=alice)).json()["data"]
    assert (stats["expired"], stats["waiting"], stats["total"]) == (1, 0, 0)
    # Its event stream tells the end and closes.
    async with client.stream("GET", f"/api/v1/generations/{job_id}/events", headers=alice) as s:
        body = b"".join([chunk async for chunk in s.aiter_bytes()]).decode()
    states = [msgspec.json.decode(line[6:])["state"] for line in body.splitlines()
              if line.startswith("data: ") and '"state"' in line]  # fmt: skip
    assert states[-1] == "expired"


@pytest.mark.parametrize("deadline", [-1, 604801, "soon"])
async def test_a_bad_deadline_is_a_400_and_stores_nothing(
    client: Client, make_key: MakeKey, deadline: object
) -> None:
    alice = await make_key("alice")
    refused = await create(client, alice, startDeadlineSeconds=deadline)
    assert refused.status_code == 400, refused.text
    assert refused.json()["errors"][0]["path"] == "startDeadlineSeconds"
    assert await count_characters(client, alice) == 0


async def test_fifty_identical_requests_at_once_queue_one_job(
    client: Client, ledger: JobLedger, make_key: MakeKey
) -> None:
    alice = await make_key("alice")
    character = (await create(client, alice)).json()["data"]
    cancel = f"/api/v1/generations/{character['imageJob']['id']}/cancel"
    assert (await client.post(cancel, headers=alice)).status_code == 200
    again = {"characterId": character["_id"]}
    answers = await asyncio.gather(*(
        client.post("/api/v1/generations", json=again, headers=alice) for _ in range(50)
    ))  # fmt: skip
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 49 + [202], [a.text for a in answers if a.status_code >= 300]
    assert len({a.json()["data"]["id"] for a in answers}) == 1
    assert (await ledger.stats()).waiting == 1
