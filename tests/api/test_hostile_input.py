"""Hostile bodies: each is a 400 problem naming the field, and nothing is stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from imagequeue_api.app import create_app
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings, replace
from tests.api.conftest import MakeKey
from tests.support.databases import find_postgres, fresh_schema, with_schema

Client = AsyncTestClient[Litestar]
DEEP = b"[" * 5000 + b"]" * 5000
HOSTILE = [
    (b'{"name": "A\\u0000B", "personality": {"poseId": "pose-standing"}}', "name", "control"),
    (b'{"name": "A", "description": "x\\u0000", "personality": {"poseId": "pose-standing"}}',
     "description", "control"),
    (b'{"name": "A", "personality": {"poseId": "pose-standing", "traits": ["a\\u001b[2J"]}}',
     "personality.traits[0]", "control"),
    (b'{"name": "A", "personality": {"poseId": "pose-standing", "traits": ' + DEEP + b"}}",
     "personality.traits[0]", "Expected `str`"),
    (b'{"name": "A", "personality": {"poseId": "pose-standing"}, "pad": ' + DEEP + b"}", "pad",
     "unknown field"),
    (DEEP, "", "Expected `object`"),
    (b'{"name": "A\xff\xfe", "personality": {"poseId": "pose-standing"}}', "name", "UTF-8"),
    (b'{"name": "A", "personality": {"poseId": "pose-standing"}, "description": "\xc3("}',
     "description", "UTF-8"),
    (b'{"name": "A", "personality": {"poseId": "pose-standing", "traits": ["ok", "\xed\xa0\x80"]}}',
     "personality.traits[1]", "UTF-8"),
    (b'{"name": "A", "personality": {"poseId": "pose-standing"}, "n\xffx": 1}', "n\ufffdx",
     "UTF-8"),
]  # fmt: skip


@pytest.fixture(params=["sqlite", "postgresql"])
async def client(
    request: pytest.FixtureRequest, api_settings: Settings, redis: Redis
) -> AsyncIterator[Client]:
    """The app on each store: PostgreSQL is the one that cannot hold a NUL."""
    del redis  # cleans this test's keys afterwards
    if request.param == "sqlite":
        async with AsyncTestClient(create_app(api_settings)) as on_sqlite:
            yield on_sqlite
        return
    admin = find_postgres()
    async with fresh_schema(admin) as schema:
        settings = replace(api_settings, database_url=with_schema(admin, schema))
        async with AsyncTestClient(create_app(settings)) as on_postgres:
            yield on_postgres


@pytest.mark.parametrize(("content", "path", "says"), HOSTILE)
async def test_hostile_bodies_are_400_with_the_field(
    client: Client, ledger: JobLedger, make_key: MakeKey, content: bytes, path: str, says: str
) -> None:
    headers = {**await make_key("alice"), "content-type": "application/json"}
    answer = await client.post("/api/v1/characters", content=content, headers=headers)
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert problem["errors"] == [{"path": path, "message": problem["errors"][0]["message"]}]
    assert says in problem["errors"][0]["message"], problem
    assert says in problem["detail"], problem
    assert (await ledger.stats()).total == 0


@pytest.mark.parametrize(
    "url",
    ["/api/v1/characters/%00", "/api/v1/characters/%FF%FE", "/api/v1/generations/a%00b",
     "/api/v1/generations/%ED%A0%80/events", "/api/v1/characters?limit=%00",
     "/api/v1/characters?offset=99999999999999999999999", "/api/v1/characters?limit=-1",
     "/api/v1/characters/" + "x" * 5000, "/assets/%00", "/assets/characters/a%00.png"],
)  # fmt: skip
async def test_hostile_paths_and_queries_are_4xx(
    client: Client, make_key: MakeKey, url: str
) -> None:
    answer = await client.get(url, headers=await make_key("alice"))
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


async def test_a_hostile_generation_body_is_400(client: Client, make_key: MakeKey) -> None:
    headers = {**await make_key("alice"), "content-type": "application/json"}
    answer = await client.post(
        "/api/v1/generations", content=b'{"characterId": "c\xff"}', headers=headers
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["errors"][0]["path"] == "characterId"
