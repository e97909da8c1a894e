"""Redis or the database going away: 503 with Retry-After, never 500, and recovery by itself."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from litestar import Litestar
from litestar.testing import AsyncTestClient

from imagequeue_api.app import create_app
from imagequeue_common.embedded_redis import EmbeddedRedis
from imagequeue_common.settings import Settings, replace
from tests.support.databases import ThreadedProxy, find_postgres, fresh_schema, with_schema
from tests.support.procs import wait_until

DEV_KEY = "dev-key-for-outage-tests"
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
CHARACTER = {"name": "Aria", "personality": {"poseId": "pose-standing"}}


async def assert_unavailable(client: AsyncTestClient[Litestar], what: str) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: client.get("/api/v1/queue/stats", headers=AUTH),
        lambda: client.post("/api/v1/characters", json=CHARACTER, headers=AUTH),
        lambda: client.get("/readyz"),
    ]
    for call in calls:
        answer = await call()
        assert answer.status_code == 503, answer.text  # type: ignore[attr-defined]
        assert answer.headers["retry-after"] == "5"  # type: ignore[attr-defined]
        assert what in answer.json()["detail"]  # type: ignore[attr-defined]


async def recovered(client: AsyncTestClient[Litestar]) -> bool:
    return (await client.get("/readyz")).status_code == 200


async def test_redis_down_is_503_then_recovers(api_settings: Settings, tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    settings = replace(api_settings, redis_url=url, api_dev_key=DEV_KEY)
    try:
        async with AsyncTestClient(create_app(settings)) as client:
            assert (await client.get("/api/v1/queue/stats", headers=AUTH)).status_code == 200
            server.stop()
            await assert_unavailable(client, "not answering")
            listed = (await client.get("/api/v1/characters", headers=AUTH)).json()
            assert listed["data"]["total"] == 0  # the refused POST kept no character
            server = EmbeddedRedis(tmp_path / "redis", port=server.port)
            server.start()
            await wait_until(lambda: recovered(client), 15, "the API to see Redis again")
            made = await client.post("/api/v1/characters", json=CHARACTER, headers=AUTH)
            assert made.status_code == 201
    finally:
        server.stop()


async def test_database_down_is_503_then_recovers(api_settings: Settings) -> None:
    admin = find_postgres()
    target = urlsplit(admin)
    proxy = ThreadedProxy(target.hostname or "127.0.0.1", target.port or 5432)
    port = proxy.start()
    async with fresh_schema(admin) as schema:
        url = with_schema(admin.replace(f":{target.port}/", f":{port}/"), schema)
        settings = replace(api_settings, database_url=url, api_dev_key=DEV_KEY)
        async with AsyncTestClient(create_app(settings)) as client:
            assert (await client.get("/api/v1/poses", headers=AUTH)).status_code == 200
            proxy.cut()
            answer = await client.post("/api/v1/characters", json=CHARACTER, headers=AUTH)
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "5"
            ready = await client.get("/readyz")
            assert (ready.status_code, "database" in ready.json()["detail"]) == (503, True)
            proxy.start(port)
            await wait_until(lambda: recovered(client), 15, "the API to see the database again")
            made = await client.post("/api/v1/characters", json=CHARACTER, headers=AUTH)
            assert made.status_code == 201
        proxy.cut()
        proxy.close()
