"""The demo ``just up`` runs is a well-behaved client of the real API: it waits out a 429
for its ``Retry-After`` and ends at any other error with one line, never a traceback."""

from __future__ import annotations

import httpx
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from imagequeue_api.app import create_app
from imagequeue_api.demo import DemoError, PacedClient, retry_after_s
from imagequeue_common.embedded_redis import free_port
from imagequeue_common.settings import Settings, replace
from tests.api.conftest import MakeKey


async def test_a_429_is_waited_out_and_every_request_succeeds(
    api_settings: Settings, redis: Redis, make_key: MakeKey
) -> None:
    del redis
    app = create_app(replace(api_settings, api_user_rps=3))
    said: list[str] = []
    async with AsyncTestClient(app, raise_server_exceptions=False) as http:
        http.headers.update(await make_key("demo", "premium"))
        client = PacedClient(http, per_second=100, say=said.append)  # far above the limit
        answers = [await client.call("GET", "/api/v1/poses") for _ in range(8)]
    assert all(len(poses) == 10 for poses in answers)
    assert said, "expected the API to refuse some of 8 requests at 3 per second"
    assert all(line.startswith("demo: the API asked to slow down (429)") for line in said)


async def test_any_other_error_is_one_line(
    client: AsyncTestClient[Litestar], make_key: MakeKey
) -> None:
    client.headers.update(await make_key("demo", "premium"))
    paced = PacedClient(client, per_second=100, say=print)
    with pytest.raises(DemoError) as caught:
        await paced.call("GET", "/api/v1/characters/unknown")
    assert str(caught.value).startswith("GET /api/v1/characters/unknown answered 404 Not Found")
    assert "\n" not in str(caught.value)


async def test_a_refused_connection_is_one_line() -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free_port()}") as http:
        with pytest.raises(DemoError, match=r"^GET /api/v1/poses failed: ConnectError"):
            await PacedClient(http, per_second=100, say=print).call("GET", "/api/v1/poses")


@pytest.mark.parametrize(
    ("header", "seconds"), [(None, 1.0), ("2", 2.0), ("0.5", 0.5), ("soon", 1.0), ("900", 60.0)]
)
def test_retry_after_is_read_safely(header: str | None, seconds: float) -> None:
    assert retry_after_s(header) == seconds
