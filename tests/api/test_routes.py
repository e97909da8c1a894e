"""Every route on the real app (Litestar's test client), real Redis and SQLite."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from imagequeue_common.contracts import JobState, Priority
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings, replace
from tests.api.conftest import MakeKey

Client = AsyncTestClient[Litestar]
POSE = "pose-standing"


def body(name: str = "Aria Voss", pose: str = POSE, **extra: Any) -> dict[str, Any]:
    return {"name": name, "personality": {"poseId": pose}, **extra}


async def create(client: Client, headers: dict[str, str], **kw: Any) -> dict[str, Any]:
    answer = await client.post("/api/v1/characters", json=body(**kw), headers=headers)
    assert answer.status_code == 201, answer.text
    data: dict[str, Any] = answer.json()["data"]
    return data


async def test_create_answers_at_once_in_the_seed_shape(
    client: Client, ledger: JobLedger, make_key: MakeKey
) -> None:
    headers = await make_key("alice", "regular")
    answer = await client.post("/api/v1/characters", json=body(), headers=headers)
    assert answer.status_code == 201
    payload = answer.json()
    assert payload["success"] is True
    data = payload["data"]
    assert data["name"] == "Aria Voss"
    assert data["displayImageUrls"] == []
    assert data["personality"]["poseId"] == POSE
    assert len(data["_id"]) == 24
    job = data["imageJob"]
    assert (job["status"], job["position"]) == ("waiting", 0)
    queued = await ledger.get_job(job["id"])  # queued in the same request
    assert (queued.state, queued.priority, queued.user) == (
        JobState.WAITING,
        Priority.NORMAL,
        "alice",
    )


@pytest.mark.parametrize(
    ("tier", "asked", "status", "priority"),
    [("premium", None, 201, "high"), ("regular", None, 201, "normal"), ("bulk", None, 201, "low"),
     ("premium", "low", 201, "low"), ("regular", "high", 403, None), ("bulk", "normal", 403, None)],
)  # fmt: skip
async def test_priority_comes_from_the_tier_and_can_only_go_down(
    client: Client,
    ledger: JobLedger,
    make_key: MakeKey,
    tier: str,
    asked: str | None,
    status: int,
    priority: str | None,
) -> None:
    extra = {"priority": asked} if asked else {}
    answer = await client.post(
        "/api/v1/characters", json=body(**extra), headers=await make_key("u", tier)
    )
    assert answer.status_code == status, answer.text
    if priority is None:
        assert answer.headers["content-type"] == "application/problem+json"
        assert (await ledger.stats()).total == 0
        return
    job = await ledger.get_job(answer.json()["data"]["imageJob"]["id"])
    assert job.priority.value == priority


async def test_users_see_only_their_own_characters(client: Client, make_key: MakeKey) -> None:
    alice, bob = await make_key("alice"), await make_key("bob")
    mine = [await create(client, alice, name=f"A{i}") for i in range(3)]
    theirs = await create(client, bob, name="B")
    assert (
        await client.get(f"/api/v1/characters/{theirs['_id']}", headers=alice)
    ).status_code == 404
    got = await client.get(f"/api/v1/characters/{mine[0]['_id']}", headers=alice)
    assert got.json()["data"]["name"] == "A0"
    page = (await client.get("/api/v1/characters?limit=2&offset=0", headers=alice)).json()["data"]
    assert (page["total"], [c["name"] for c in page["items"]]) == (3, ["A2", "A1"])
    rest = (await client.get("/api/v1/characters?limit=2&offset=2", headers=alice)).json()["data"]
    assert [c["name"] for c in rest["items"]] == ["A0"]


async def test_delete_cancels_the_pending_job(
    client: Client, ledger: JobLedger, make_key: MakeKey
) -> None:
    alice = await make_key("alice")
    made = await create(client, alice)
    assert (
        await client.delete(f"/api/v1/characters/{made['_id']}", headers=await make_key("bob"))
    ).status_code == 404
    assert (
        await client.delete(f"/api/v1/characters/{made['_id']}", headers=alice)
    ).status_code == 204
    assert (await ledger.get_job(made["imageJob"]["id"])).state == JobState.CANCELLED
    assert (await client.get(f"/api/v1/characters/{made['_id']}", headers=alice)).status_code == 404


@pytest.mark.parametrize(
    ("content", "content_type", "status", "path"),
    [
        (b"{not json", "application/json", 400, None),
        (b'{"name": 7, "personality": {"poseId": "pose-standing"}}', "application/json",
         400, "name"),
        (b'{"name": "A", "personality": {"poseId": "pose-standing", "x": 1}}', "application/json",
         400, "personality.x"),
        (b'{"personality": {"poseId": "pose-standing"}}', "application/json", 400, "name"),
        (b'{"name": "A", "personality": {"poseId": "pose-nope"}}', "application/json", 422,
         "personality.poseId"),
        (b'{"name": "' + b"x" * 121 + b'", "personality": {"poseId": "pose-standing"}}',
         "application/json", 400, "name"),
        (b'{"name": "A", "personality": {"poseId": "pose-standing"}}', "text/plain", 415, None),
        (b"", "application/json", 400, None),
    ],
)  # fmt: skip
async def test_bad_requests_are_problems_and_change_nothing(
    client: Client,
    ledger: JobLedger,
    make_key: MakeKey,
    content: bytes,
    content_type: str,
    status: int,
    path: str | None,
) -> None:
    headers = {**await make_key("alice"), "content-type": content_type}
    answer = await client.post("/api/v1/characters", content=content, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert (problem["status"], problem["instance"]) == (status, "/api/v1/characters")
    assert problem["title"]
    assert problem["detail"]
    if path is not None:
        assert path in [e["path"] for e in problem["errors"]], problem
    assert (await ledger.stats()).total == 0
    listed = (await client.get("/api/v1/characters", headers=await make_key("alice"))).json()
    assert listed["data"]["total"] == 0


async def test_too_large_body_is_413(
    client: Client, make_key: MakeKey, api_settings: Settings
) -> None:
    big = body(description="d" * 1000) | {"pad": "x" * api_settings.api_max_body_bytes}
    answer = await client.post("/api/v1/characters", json=big, headers=await make_key())
    assert answer.status_code == 413
    assert answer.json()["status"] == 413


@pytest.mark.parametrize(
    "auth", [None, "Bearer nope", "Bearer iq_0123456789abcdef_" + "a" * 43, "Basic x"]
)
async def test_no_or_bad_key_is_401(client: Client, auth: str | None) -> None:
    headers = {"Authorization": auth} if auth else {}
    answer = await client.get("/api/v1/poses", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["type"] == "/problems/unauthorized"


async def test_poses(client: Client, make_key: MakeKey) -> None:
    headers = await make_key()
    poses = (await client.get("/api/v1/poses", headers=headers)).json()["data"]
    assert {"_id": POSE, "name": "Standing portrait"} in poses or POSE in [p["_id"] for p in poses]
    assert (await client.get(f"/api/v1/poses/{POSE}", headers=headers)).json()["data"][
        "_id"
    ] == POSE
    missing = await client.get("/api/v1/poses/pose-nope", headers=headers)
    assert missing.status_code == 404


async def test_generations_follow_cancel_and_ownership(client: Client, make_key: MakeKey) -> None:
    alice, bob = await make_key("alice", "bulk"), await make_key("bob")
    made = await create(client, alice)
    # Its image is queued already (by the create): that job is the answer, nothing is added.
    same = await client.post(
        "/api/v1/generations", json={"characterId": made["_id"]}, headers=alice
    )
    assert same.status_code == 200, same.text
    assert same.json()["data"]["id"] == made["imageJob"]["id"]
    answer = await client.post(
        "/api/v1/generations", json={"characterId": made["_id"], "deduplicate": False},
        headers=alice,
    )  # fmt: skip
    assert answer.status_code == 202, answer.text
    job = answer.json()["data"]
    assert (job["state"], job["priority"], job["characterId"], job["position"]) == (
        "waiting", "low", made["_id"], 1)  # fmt: skip
    read = (await client.get(f"/api/v1/generations/{job['id']}", headers=alice)).json()["data"]
    assert read["position"] == 1
    assert read["etaSeconds"] is None  # no live worker: no honest ETA
    assert (await client.get(f"/api/v1/generations/{job['id']}", headers=bob)).status_code == 404
    other = await client.post("/api/v1/generations", json={"characterId": made["_id"]}, headers=bob)
    assert other.status_code == 404
    cancelled = await client.post(f"/api/v1/generations/{job['id']}/cancel", headers=alice)
    assert cancelled.json()["data"]["state"] == "cancelled"
    again = await client.delete(f"/api/v1/generations/{job['id']}", headers=alice)
    assert again.json()["data"]["state"] == "cancelled"  # cancelling twice is harmless


async def test_queue_stats(client: Client, make_key: MakeKey) -> None:
    headers = await make_key()
    await create(client, headers)
    stats = (await client.get("/api/v1/queue/stats", headers=headers)).json()["data"]
    seed = ("waiting", "active", "completed", "failed", "delayed", "total")
    assert [stats[k] for k in seed] == [1, 0, 0, 0, 0, 1]
    assert (stats["usersWaiting"], stats["usersActive"]) == (1, 0)
    assert (stats["jobsPerMinute"], stats["liveWorkers"], stats["rateLimitMax"]) == (0, 0, 0)
    # No live worker: no capacity, and no telling when the backlog drains.
    assert (stats["slots"], stats["capacityPerSecond"], stats["drainEtaSeconds"]) == (0, 0, None)
    assert stats["meanJobSeconds"] == 45  # the seed's typical image time until measured


async def test_health_ready_and_metrics(app: Litestar, redis: Any, api_settings: Settings) -> None:
    from imagequeue_api.app import create_app  # noqa: PLC0415

    async with AsyncTestClient(app) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        assert (await client.get("/readyz")).json() == {"status": "ready"}
        assert (await client.get("/metrics")).status_code == 404  # off without a token
    token = "t" * 32
    async with AsyncTestClient(create_app(replace(api_settings, metrics_token=token))) as client:
        assert (await client.get("/metrics")).status_code == 401
        text = (await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})).text
        assert 'imagequeue_jobs{state="waiting"} 0' in text
        assert "imagequeue_job_run_seconds_count 0" in text
        assert "# TYPE imagequeue_upstream_requests_total counter" in text


async def test_idempotency_key_gives_one_character(
    client: Client, ledger: JobLedger, make_key: MakeKey
) -> None:
    headers = {**await make_key("alice"), "Idempotency-Key": "create-aria-1"}
    first = await client.post("/api/v1/characters", json=body(), headers=headers)
    second = await client.post("/api/v1/characters", json=body(), headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    other = await client.post("/api/v1/characters", json=body(name="Luna"), headers=headers)
    assert other.status_code == 422
    listed = (await client.get("/api/v1/characters", headers=await make_key("alice"))).json()
    assert listed["data"]["total"] == 1
    assert (await ledger.stats()).total == 1


async def test_idempotency_race_100_posts_one_character(
    client: Client, ledger: JobLedger, make_key: MakeKey
) -> None:
    headers = {**await make_key("alice"), "Idempotency-Key": "race"}
    answers = await asyncio.gather(
        *(client.post("/api/v1/characters", json=body(), headers=headers) for _ in range(100))
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["data"]["_id"] for a in answers}) == 1
    assert (await ledger.stats()).total == 1


async def test_a_flooding_user_gets_429_and_cannot_crowd_out_others(
    ledger: JobLedger, make_key: MakeKey, api_settings: Settings, redis: Any
) -> None:
    from imagequeue_api.app import create_app  # noqa: PLC0415

    settings = replace(api_settings, user_max_pending=5)
    flooder, calm = await make_key("flooder", "regular"), await make_key("calm", "regular")
    async with AsyncTestClient(create_app(settings)) as client:
        codes = [
            (await client.post("/api/v1/characters", json=body(name=f"F{i}"), headers=flooder))
            for i in range(8)
        ]
        assert [a.status_code for a in codes] == [201] * 5 + [429] * 3
        refused = codes[5]
        assert refused.headers["retry-after"]
        assert refused.json()["type"] == "/problems/user-quota"
        listed = (await client.get("/api/v1/characters", headers=flooder)).json()["data"]
        assert listed["total"] == 5  # a refused job leaves no character behind
        mine = await create(client, calm)
    # Fair share: one turn of theirs ahead, not all five.
    assert await ledger.position(mine["imageJob"]["id"]) == 1


async def test_requests_per_second_per_user(make_key: MakeKey, api_settings: Settings) -> None:
    from imagequeue_api.app import create_app  # noqa: PLC0415

    headers = await make_key("quick")
    async with AsyncTestClient(create_app(replace(api_settings, api_user_rps=3))) as client:
        answers = [await client.get("/api/v1/poses", headers=headers) for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert 1 <= int(answers[3].headers["retry-after"]) <= 1
        other = await client.get("/api/v1/poses", headers=await make_key("other"))
        assert other.status_code == 200
