"""Dashboard sessions in real Redis: opened, renewed, ended one by one, per login or all."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from imagequeue_api.dashboard.logins import Logins, fingerprint
from imagequeue_api.dashboard.sessions import SessionStore, is_token
from imagequeue_common.settings import Settings, replace
from tests.support.cluster import raw_client
from tests.support.procs import wait_until


@pytest.fixture
async def unreachable() -> AsyncIterator[Redis]:
    """A client for a port nobody listens on: any command through it fails."""
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    yield client
    await client.aclose()


def store(redis: Redis, queue: str, idle_s: float = 60, max_s: float = 600) -> SessionStore:
    return SessionStore(redis, queue, idle_s=idle_s, max_s=max_s)


def key(queue: str, token: str) -> str:
    return f"iq:{{{queue}}}:dash:session:{hashlib.sha256(token.encode()).hexdigest()}"


async def test_a_session_is_stored_under_its_tokens_digest_only(
    redis: Redis, queue_name: str
) -> None:
    sessions = store(redis, queue_name)
    token, opened = await sessions.open("admin", "admin", "fp-1")
    assert is_token(token)
    assert (opened.user, opened.role, opened.fingerprint) == ("admin", "admin", "fp-1")
    assert opened.ends_ms - opened.created_ms == 600_000
    assert await sessions.load(token) == opened
    keys = sorted([k async for k in redis.scan_iter(match=f"*{{{queue_name}}}*")])
    assert keys == sorted([f"iq:{{{queue_name}}}:dash:sessions", key(queue_name, token)])
    stored = await redis.hgetall(key(queue_name, token))
    assert token not in " ".join([*keys, *map(str, stored.values())])
    assert 0 < await redis.pttl(key(queue_name, token)) <= 60_000


async def test_malformed_and_unknown_tokens_are_no_session(
    redis: Redis, queue_name: str, unreachable: Redis
) -> None:
    token, _ = await store(redis, queue_name).open("admin", "admin", "fp")
    other = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert await store(redis, queue_name).load(other) is None
    # Not shaped like a token: refused before any Redis call (this client would fail).
    offline = store(unreachable, queue_name)
    for bad in ("", "x", token + "x", token[:-1], token + "\n", "é" * 43, "null", "../" * 15):
        assert await offline.load(bad) is None


async def test_a_hand_edited_record_is_no_session(redis: Redis, queue_name: str) -> None:
    sessions = store(redis, queue_name)
    token, _ = await sessions.open("admin", "admin", "fp")
    await redis.hset(key(queue_name, token), "role", "root")
    assert await sessions.load(token) is None
    await redis.hset(key(queue_name, token), mapping={"role": "admin", "created_ms": "soon"})
    assert await sessions.load(token) is None


async def test_using_a_session_renews_its_idle_time(redis: Redis, queue_name: str) -> None:
    sessions = store(redis, queue_name, idle_s=60)
    token, _ = await sessions.open("admin", "admin", "fp")
    await redis.pexpire(key(queue_name, token), 1000)
    assert await sessions.load(token) is not None
    assert await redis.pttl(key(queue_name, token)) > 59_000


async def test_an_idle_session_ends(redis: Redis, queue_name: str) -> None:
    sessions = store(redis, queue_name, idle_s=0.2)
    token, _ = await sessions.open("admin", "admin", "fp")

    async def ended() -> bool:
        return await redis.exists(key(queue_name, token)) == 0

    await wait_until(ended, 5, "the idle session to expire")
    assert await sessions.load(token) is None


async def test_a_session_ends_at_its_lifetime_however_much_it_is_used(
    redis: Redis, queue_name: str
) -> None:
    sessions = store(redis, queue_name, idle_s=60, max_s=0.3)
    token, opened = await sessions.open("admin", "admin", "fp")
    assert opened.ends_ms - opened.created_ms == 300
    # Each load renews the idle time, but never past the end of the lifetime.
    assert 0 < await redis.pttl(key(queue_name, token)) <= 300

    async def ended() -> bool:
        return await sessions.load(token) is None

    await wait_until(ended, 5, "the session's lifetime to end")
    assert await redis.exists(key(queue_name, token)) == 0


async def test_end_one_a_users_or_all(redis: Redis, queue_name: str) -> None:
    sessions = store(redis, queue_name)
    a1, s_a1 = await sessions.open("admin", "admin", "fp")
    a2, _ = await sessions.open("admin", "admin", "fp")
    v1, s_v1 = await sessions.open("watcher", "viewer", "fp")
    v2, _ = await sessions.open("watcher", "viewer", "fp")
    listed = await sessions.list_sessions()
    assert sorted(s.user for s in listed) == ["admin", "admin", "watcher", "watcher"]
    assert await sessions.end(s_a1.digest) is True
    assert await sessions.end(s_a1.digest) is False
    assert await sessions.load(a1) is None
    assert await sessions.load(a2) is not None
    assert await sessions.end_user("watcher") == 2
    assert await sessions.load(v1) is None
    assert await sessions.load(v2) is None
    assert await sessions.load(a2) is not None
    assert [s.user for s in await sessions.list_sessions()] == ["admin"]
    assert s_v1.digest not in {s.digest for s in await sessions.list_sessions()}
    assert await sessions.end_all() == 1
    assert await sessions.load(a2) is None
    assert await sessions.list_sessions() == []
    with pytest.raises(ValueError, match="end_all"):
        await sessions.end_user("")


async def test_a_login_sweeps_ended_sessions_from_the_index(redis: Redis, queue_name: str) -> None:
    sessions = store(redis, queue_name)
    token, gone = await sessions.open("admin", "admin", "fp")
    await redis.delete(key(queue_name, token))  # as if its idle time had run out
    _, kept = await sessions.open("admin", "admin", "fp")
    index = await redis.zrange(f"iq:{{{queue_name}}}:dash:sessions", 0, -1)
    assert index == [kept.digest]
    assert gone.digest not in index


async def test_sessions_work_with_a_client_that_does_not_decode(
    redis_url: str, redis: Redis, queue_name: str
) -> None:
    raw = raw_client(redis_url)
    try:
        sessions = store(raw, queue_name)
        token, opened = await sessions.open("admin", "admin", "fp")
        assert await sessions.load(token) == opened
        assert await sessions.list_sessions() == [opened]
        assert await sessions.end_user("admin") == 1
    finally:
        await raw.aclose()


def test_a_session_matches_its_login_until_the_password_changes(settings: Settings) -> None:
    first, second = "first-password-1", "second-password-1"
    old = Logins(replace(settings, admin_password=first))
    assert old.check("admin", first) == "admin"
    assert old.check("admin", second) is None
    assert old.check("someone", first) is None
    opened_with = old.fingerprint("admin", "admin")
    assert opened_with == fingerprint("admin", first)
    assert first not in opened_with
    assert old.still_valid("admin", "admin", opened_with)
    assert not old.still_valid("admin", "viewer", opened_with)
    new = Logins(replace(settings, admin_password=second))
    assert not new.still_valid("admin", "admin", opened_with)
    renamed = Logins(replace(settings, admin_username="boss", admin_password=first))
    assert not renamed.still_valid("admin", "admin", opened_with)
