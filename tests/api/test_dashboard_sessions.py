"""Dashboard sessions over real HTTP against real API processes and Redis: hostile cookies,
logout, a password change, "log out everywhere", and Redis down."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from imagequeue_common.embedded_redis import EmbeddedRedis
from imagequeue_common.settings import Settings, replace
from tests.support.api import ApiServer
from tests.support.dashboard import (
    ADMIN,
    BASE,
    DEV_KEY,
    VIEWER,
    csrf_of,
    dashboard_server,
    is_login_page,
    login,
    token_of,
    try_login,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def api(stack: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    server = dashboard_server(stack, tmp_path / "api.log")
    yield server
    server.stop()


@pytest.fixture
def api_pair(stack: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    """Two API processes: a session opened on one must end on both (Redis holds it)."""
    server = dashboard_server(stack, tmp_path / "api.log", api_processes=2)
    server.wait_log("all 2 API processes ready")
    yield server
    server.stop()


def cookie(token: str) -> dict[str, str]:
    """Headers that present ``token`` as the session cookie (a copy of it, replayed)."""
    return {"Cookie": f"iq_admin={token}"}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


# What made Litestar's cookie sessions answer 500 on every route (their "additional
# authenticated data" was parsed as JSON before decryption), and other garbage.
HOSTILE = [
    "garbage",
    "!!!not-base64%%%",
    b64(b"\0" * 12 + b"x" * 20 + b"additional_authenticated_data={broken"),
    b64(b"\0" * 12 + b"x" * 20 + b"additional_authenticated_data=[1,2]"),
    b64(b"\0" * 12 + b"x" * 20 + b'additional_authenticated_data={"expires_at":"x"}'),
    "null",
    "",
    '"' + "A" * 43 + '"',
    "A" * 43,  # shaped like a token, but no session
    "A" * 4000,
]


async def assert_no_500(client: httpx.AsyncClient, cookie: bytes) -> None:
    headers = [(b"cookie", cookie)]
    auth = [*headers, (b"authorization", f"Bearer {DEV_KEY}".encode())]
    assert (await client.get("/healthz", headers=headers)).status_code == 200
    assert (await client.get("/api/v1/poses", headers=auth)).status_code == 200
    assert is_login_page(await client.get(BASE, headers=headers))
    assert is_login_page(await client.get(f"{BASE}/api/overview", headers=headers))
    assert (await client.get(f"{BASE}/login", headers=headers)).status_code == 200
    refused = await client.post(f"{BASE}/actions/pause", headers=headers, data={"csrf": "x"})
    assert refused.status_code == 401


async def test_hostile_cookies_are_no_session_on_every_route(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        for value in HOSTILE:
            await assert_no_500(client, f"iq_admin={value}".encode())
        chunks = "; ".join(f"iq_admin-{i}={b64(b'x' * 30)}" for i in range(100))
        await assert_no_500(client, chunks.encode())
        await assert_no_500(client, b"iq_admin=\xff\xfe\x80; iq_admin==; =; ;;")
        await assert_no_500(client, b"iq_admin=" + b"A" * 60_000)
        # A real session among garbage still works; the garbage changes nothing.
        await login(client, ADMIN)
        mixed = f"iq_admin=garbage; iq_admin={token_of(client)}; {chunks}"
        fresh = httpx.AsyncClient(base_url=api.url, timeout=10)
        async with fresh:
            assert (await fresh.get(BASE, headers={"Cookie": mixed})).status_code == 200


async def test_the_cookie_holds_only_a_token(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        answer = await try_login(client, ADMIN)
        cookie = answer.headers["set-cookie"].lower()
        for part in ("path=/admin", "httponly", "samesite=strict", "max-age=28800"):
            assert part in cookie
        assert "secure" not in cookie
        assert len(token_of(client)) == 43
        # Behind a TLS proxy (uvicorn trusts X-Forwarded-Proto from loopback): Secure.
        https = await try_login(client, ADMIN, headers={"X-Forwarded-Proto": "https"})
        assert "secure" in https.headers["set-cookie"].lower()


async def test_logout_ends_the_session_and_every_copy_of_its_cookie(api_pair: ApiServer) -> None:
    api = api_pair
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        csrf = await login(client, ADMIN)
        copied = token_of(client)
        refused = await client.post(f"{BASE}/logout", data={"csrf": "forged"})
        assert refused.status_code == 403  # and the session lives on
        assert (await client.get(BASE)).status_code == 200
        out = await client.post(f"{BASE}/logout", data={"csrf": csrf})
        assert out.status_code == 303
        assert out.headers["location"].startswith(f"{BASE}/login")
        assert "max-age=0" in out.headers["set-cookie"].lower()
    # The copy, replayed over new connections (the kernel spreads them over both processes).
    for path in ("", "/api/overview", "/jobs?state=waiting", "/sessions"):
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as replay:
            answer = await replay.get(f"{BASE}{path}", headers=cookie(copied))
            assert is_login_page(answer)
            assert "max-age=0" in answer.headers["set-cookie"].lower()  # told to forget it
            pause = await replay.post(f"{BASE}/actions/pause", data={"csrf": csrf},
                                      headers=cookie(copied))  # fmt: skip
            assert pause.status_code == 401


async def test_a_new_admin_password_ends_sessions_opened_with_the_old(
    stack: Settings, tmp_path: Path, redis: Redis
) -> None:
    first = dashboard_server(stack, tmp_path / "api-1.log")
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=10) as client:
            await login(client, ADMIN)
            admin_token = token_of(client)
            client.cookies.clear()
            await login(client, VIEWER)
            viewer_token = token_of(client)
    finally:
        first.stop()
    # The same password after a restart: the sessions live on (they are in Redis).
    again = dashboard_server(stack, tmp_path / "api-2.log")
    try:
        async with httpx.AsyncClient(base_url=again.url, timeout=10) as client:
            page = await client.get(BASE, headers=cookie(admin_token))
            assert page.status_code == 200
    finally:
        again.stop()
    changed_login = (ADMIN[0], "a-new-password-1")
    changed = dashboard_server(stack, tmp_path / "api-3.log", admin_password=changed_login[1])
    try:
        async with httpx.AsyncClient(base_url=changed.url, timeout=10) as client:
            assert is_login_page(await client.get(BASE, headers=cookie(admin_token)))
            # The viewer's password did not change: its session still works.
            page = await client.get(BASE, headers=cookie(viewer_token))
            assert page.status_code == 200
    finally:
        changed.stop()
    found = redis.scan_iter(match=f"iq:{{{stack.queue_name}}}:dash:session:*")
    users = [await redis.hget(k, "user") async for k in found]
    assert users == ["watcher"]  # the old admin session was deleted, not just refused


async def test_log_out_everywhere(api: ApiServer) -> None:
    clients = [httpx.AsyncClient(base_url=api.url, timeout=10) for _ in range(4)]
    admin, admin_2, viewer, viewer_2 = clients
    try:
        csrf = await login(admin, ADMIN)
        await login(admin_2, ADMIN)
        viewer_csrf = await login(viewer, VIEWER)
        await login(viewer_2, VIEWER)
        listed = await admin.get(f"{BASE}/sessions")
        assert listed.text.count("<td>watcher</td>") == 2
        assert "this session" in listed.text
        # A viewer may not; no CSRF token, no action; another origin, no action.
        assert (await viewer.get(f"{BASE}/sessions")).status_code == 403
        ended = await viewer.post(f"{BASE}/sessions/end", data={"csrf": viewer_csrf})
        assert ended.status_code == 403
        assert (await admin.post(f"{BASE}/sessions/end", data={"user": ""})).status_code == 403
        cross = await admin.post(f"{BASE}/sessions/end", data={"csrf": csrf, "user": ""},
                                 headers={"Origin": "https://evil.example"})  # fmt: skip
        assert cross.status_code == 403
        assert all([(await c.get(BASE)).status_code == 200 for c in clients])

        some = await admin.post(f"{BASE}/sessions/end", data={"csrf": csrf, "user": "watcher"})
        assert some.status_code == 303
        assert "Ended+2+sessions+of+watcher" in some.headers["location"]
        assert [(await c.get(BASE)).status_code for c in clients] == [200, 200, 401, 401]

        csrf = csrf_of(await admin.get(f"{BASE}/sessions"))
        everyone = await admin.post(f"{BASE}/sessions/end", data={"csrf": csrf, "user": ""})
        assert everyone.status_code == 303
        assert everyone.headers["location"].startswith(f"{BASE}/login")
        assert [(await c.get(BASE)).status_code for c in clients] == [401] * 4
    finally:
        for client in clients:
            await client.aclose()


async def test_redis_down_is_a_503_page_not_a_500(stack: Settings, tmp_path: Path) -> None:
    private = EmbeddedRedis(tmp_path / "redis")
    url = private.start()
    api = dashboard_server(replace(stack, redis_url=url), tmp_path / "api.log")
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
            await login(client, ADMIN)
            private.stop()
            for answer in (await client.get(BASE), await try_login(client, ADMIN)):
                assert answer.status_code == 503, answer.text
                assert answer.headers["retry-after"] == "5"
                assert "not answering" in answer.text
                assert answer.headers["content-type"].startswith("text/html")
            assert (await client.get(f"{BASE}/login")).status_code == 503  # the cookie is read
            client.cookies.clear()
            assert (await client.get(f"{BASE}/login")).status_code == 200  # no cookie: no Redis
            assert (await client.get("/healthz")).status_code == 200
    finally:
        api.stop()
        private.stop()
