"""The api's access pieces on real Redis: API keys and their CLI, idempotency, request rate."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import re
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from imagequeue_api.apikeys import TIER_PRIORITY, ApiKeyStore
from imagequeue_api.cli_keys import add_key_commands, run_key_command
from imagequeue_api.idempotency import (
    Begin,
    IdempotencyBusyError,
    IdempotencyStore,
    Mismatch,
    Proceed,
    Replay,
)
from imagequeue_api.ratelimit import RequestLimiter
from imagequeue_common.contracts import Priority
from tests.support.cluster import command_calls, raw_client

KEY_SHAPE = re.compile(r"iq_[0-9a-f]{16}_[A-Za-z0-9_-]{43}\Z")


@pytest.fixture
async def unreachable() -> AsyncIterator[Redis]:
    """A client for a port nobody listens on: any command through it fails."""
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    yield client
    await client.aclose()


async def keys_of(redis: Redis, queue: str) -> list[str]:
    return sorted([k async for k in redis.scan_iter(match=f"*{{{queue}}}*")])


# API keys


async def test_a_created_key_authenticates_and_only_its_digest_is_stored(
    redis: Redis, queue_name: str
) -> None:
    store = ApiKeyStore(redis, queue_name)
    plaintext, key = await store.create("user-1", "premium", "laptop")
    assert KEY_SHAPE.match(plaintext)
    assert plaintext.startswith(f"iq_{key.key_id}_")
    assert (key.user_id, key.tier, key.label) == ("user-1", "premium", "laptop")
    assert await store.authenticate(plaintext) == key
    assert key.priority is Priority.HIGH
    assert TIER_PRIORITY == {"premium": Priority.HIGH, "regular": Priority.NORMAL,
                             "bulk": Priority.LOW}  # fmt: skip
    stored = await redis.hgetall(f"iq:{{{queue_name}}}:apikey:{key.key_id}")
    assert stored["digest"] == hashlib.sha256(plaintext.encode()).hexdigest()
    secret = plaintext.split("_", 2)[2]
    assert not any(secret in v for v in stored.values())
    assert await keys_of(redis, queue_name) == [
        f"iq:{{{queue_name}}}:apikey:{key.key_id}",
        f"iq:{{{queue_name}}}:apikeys",
        f"iq:{{{queue_name}}}:apikeys:user:user-1",
        f"iq:{{{queue_name}}}:whsec:{key.key_id}",  # its webhook secret, kept to sign with
    ]
    # The API key itself is in no key, the webhook secret only in its own.
    for name in await keys_of(redis, queue_name):
        kind = await redis.type(name)
        values = await redis.hvals(name) if kind == "hash" else await redis.smembers(name)
        assert not any(secret in v for v in values)


async def test_wrong_or_malformed_keys_do_not_authenticate(
    redis: Redis, queue_name: str, unreachable: Redis
) -> None:
    store = ApiKeyStore(redis, queue_name)
    plaintext, _ = await store.create("u", "regular")
    last = "A" if plaintext[-1] != "A" else "B"
    assert await store.authenticate(plaintext[:-1] + last) is None
    assert await store.authenticate("iq_0123456789abcdef_" + "x" * 43) is None
    # Malformed keys are refused before any Redis call: this client would fail.
    offline = ApiKeyStore(unreachable, queue_name)
    for bad in ("", "Bearer x", plaintext + "x", plaintext[:-1], plaintext.upper(), "iq_é"):
        assert await offline.authenticate(bad) is None


async def test_create_refuses_bad_user_ids_and_tiers(redis: Redis, queue_name: str) -> None:
    store = ApiKeyStore(redis, queue_name)
    for user in ("", "a b", "x" * 65, "u\n", "ü"):
        with pytest.raises(ValueError, match="invalid user id"):
            await store.create(user, "regular")
    with pytest.raises(ValueError, match="unknown tier 'gold'"):
        await store.create("u", "gold")
    assert await keys_of(redis, queue_name) == []


async def test_revoke_and_list(redis: Redis, queue_name: str) -> None:
    store = ApiKeyStore(redis, queue_name)
    a_text, a = await store.create("alice", "premium")
    _, b = await store.create("bob", "bulk", "batch job")
    _, a2 = await store.create("alice", "regular")
    assert await store.list_keys() == [a, b, a2]
    assert await store.list_keys("alice") == [a, a2]
    assert await store.revoke(a.key_id) is True
    assert await store.revoke(a.key_id) is False
    assert await store.revoke("not-a-key-id") is False
    assert await store.authenticate(a_text) is None
    assert await store.list_keys("alice") == [a2]
    assert await store.list_keys() == [b, a2]
    assert await store.list_keys("nobody") == []


async def test_keys_work_with_a_client_that_does_not_decode(
    redis_url: str, redis: Redis, queue_name: str
) -> None:
    raw = raw_client(redis_url)
    try:
        store = ApiKeyStore(raw, queue_name)
        plaintext, key = await store.create("u", "bulk")
        assert await store.authenticate(plaintext) == key
        assert await store.list_keys("u") == [key]
        assert await store.revoke(key.key_id) is True
    finally:
        await raw.aclose()


# The CLI


def key_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagequeue-api")
    add_key_commands(parser.add_subparsers(dest="command", required=True))
    return parser


async def run_cli(store: ApiKeyStore, *argv: str) -> int:
    args = key_parser().parse_args(argv)
    assert args.command == "keys"
    return await run_key_command(args, store)


async def test_cli_creates_lists_and_revokes(
    redis: Redis, queue_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ApiKeyStore(redis, queue_name)
    assert await run_cli(store, "keys", "create", "--user", "u1", "--tier", "premium",
                         "--label", "ci") == 0  # fmt: skip
    out = capsys.readouterr().out
    plaintext = re.search(r"key:\s+(\S+)", out)
    key_id = re.search(r"key_id:\s+(\S+)", out)
    assert plaintext
    assert key_id
    key = await store.authenticate(plaintext.group(1))
    assert key is not None
    assert key.key_id == key_id.group(1)
    assert (key.user_id, key.tier, key.label) == ("u1", "premium", "ci")

    assert await run_cli(store, "keys", "list", "--user", "u1") == 0
    listing = capsys.readouterr().out
    assert key.key_id in listing
    assert "premium" in listing
    assert plaintext.group(1) not in listing

    assert await run_cli(store, "keys", "revoke", key.key_id) == 0
    assert await run_cli(store, "keys", "revoke", key.key_id) == 1
    assert "no key with id" in capsys.readouterr().err
    assert await run_cli(store, "keys", "list") == 0
    assert key.key_id not in capsys.readouterr().out


async def test_cli_refuses_bad_input(
    redis: Redis, queue_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ApiKeyStore(redis, queue_name)
    assert await run_cli(store, "keys", "create", "--user", "a b", "--tier", "bulk") == 2
    assert "invalid user id" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        key_parser().parse_args(["keys", "create", "--user", "u", "--tier", "gold"])
    assert exit_info.value.code == 2
    assert await keys_of(redis, queue_name) == []


# Idempotency


async def evalsha_calls(redis: Redis) -> int:
    return await command_calls(redis, "evalsha")


async def wait_for_evalsha(redis: Redis, calls: int, deadline_s: float = 5) -> None:
    """Poll until the server has run ``calls`` EVALSHAs: a waiter has asked at least once."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while await evalsha_calls(redis) < calls:
        assert loop.time() < end, "the waiter never asked Redis"
        await asyncio.sleep(0.005)


async def test_one_of_100_concurrent_requests_proceeds_and_the_rest_replay(
    redis: Redis, queue_name: str
) -> None:
    # Four stores: four API processes sharing one Redis.
    stores = [IdempotencyStore(redis, queue_name) for _ in range(4)]

    async def begin(store: IdempotencyStore) -> tuple[IdempotencyStore, Begin]:
        return store, await store.begin("u", "key-1", b'{"pose": "p1"}')

    tasks = [asyncio.create_task(begin(stores[i % 4])) for i in range(100)]
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED, timeout=10)
    holder, first = next(iter(done)).result()
    assert first == Proceed()
    assert await holder.complete("u", "key-1", 202, b'{"job_id": "j1"}', "application/json")
    results = [result for _, result in await asyncio.gather(*tasks)]
    assert results.count(Proceed()) == 1
    answer = Replay(202, b'{"job_id": "j1"}', "application/json")
    assert results.count(answer) == 99
    assert await stores[0].begin("u", "key-1", b'{"pose": "p1"}') == answer


async def test_the_same_key_with_another_body_is_a_mismatch(redis: Redis, queue_name: str) -> None:
    store = IdempotencyStore(redis, queue_name)
    assert await store.begin("u", "k", b"one") == Proceed()
    assert await store.begin("u", "k", b"two") == Mismatch()
    assert await store.complete("u", "k", 201, b"done", "text/plain")
    assert await store.begin("u", "k", b"two") == Mismatch()
    # Keys are per user: another user's "k" is another key.
    assert await store.begin("v", "k", b"two") == Proceed()


async def test_abandon_lets_the_next_request_proceed(redis: Redis, queue_name: str) -> None:
    store = IdempotencyStore(redis, queue_name)
    assert await store.begin("u", "k", b"x") == Proceed()
    assert await store.abandon("u", "k") is True
    assert await store.abandon("u", "k") is False
    assert await store.begin("u", "k", b"x") == Proceed()
    # A request waiting on the key takes it over when the holder abandons.
    calls = await evalsha_calls(redis)
    waiter = asyncio.create_task(IdempotencyStore(redis, queue_name).begin("u", "k", b"x"))
    await wait_for_evalsha(redis, calls + 1)
    assert not waiter.done()
    assert await store.abandon("u", "k") is True
    assert await asyncio.wait_for(waiter, timeout=5) == Proceed()


async def test_an_expired_lock_is_taken_over(redis: Redis, queue_name: str) -> None:
    dead = IdempotencyStore(redis, queue_name, lock_s=0.2)
    assert await dead.begin("u", "k", b"x") == Proceed()
    # The holder never comes back; the next request waits out its lock, then proceeds.
    alive = IdempotencyStore(redis, queue_name, lock_s=0.2)
    assert await asyncio.wait_for(alive.begin("u", "k", b"x"), timeout=5) == Proceed()
    assert await alive.complete("u", "k", 200, b"new", "text/plain") is True
    # The old holder returning late cannot overwrite the new answer.
    assert await dead.complete("u", "k", 200, b"old", "text/plain") is False
    assert await alive.begin("u", "k", b"x") == Replay(200, b"new", "text/plain")


async def test_a_key_still_held_after_lock_s_is_busy(redis: Redis, queue_name: str) -> None:
    holder = IdempotencyStore(redis, queue_name, lock_s=30)
    assert await holder.begin("u", "k", b"x") == Proceed()
    impatient = IdempotencyStore(redis, queue_name, lock_s=0.1)
    with pytest.raises(IdempotencyBusyError) as busy:
        await impatient.begin("u", "k", b"x")
    assert busy.value.waited_s == 0.1


async def test_answers_keep_binary_bodies_for_ttl_s(redis: Redis, queue_name: str) -> None:
    store = IdempotencyStore(redis, queue_name, ttl_s=60, lock_s=5)
    body = bytes(range(256))
    assert await store.begin("u", "k", b"x") == Proceed()
    [record] = await keys_of(redis, queue_name)
    assert record.startswith(f"iq:{{{queue_name}}}:idem:u:")
    assert 0 < await redis.pttl(record) <= 5000
    assert await store.complete("u", "k", 200, body, "application/octet-stream")
    assert 5000 < await redis.pttl(record) <= 60_000
    assert await store.begin("u", "k", b"x") == Replay(200, body, "application/octet-stream")


async def test_replay_with_a_client_that_does_not_decode(
    redis_url: str, redis: Redis, queue_name: str
) -> None:
    raw = raw_client(redis_url)
    try:
        store = IdempotencyStore(raw, queue_name)
        assert await store.begin("u", "k", b"x") == Proceed()
        assert await store.complete("u", "k", 201, b"\xff\x00", "application/x")
        assert await store.begin("u", "k", b"x") == Replay(201, b"\xff\x00", "application/x")
    finally:
        await raw.aclose()


async def test_bad_idempotency_keys_are_refused(unreachable: Redis, queue_name: str) -> None:
    store = IdempotencyStore(unreachable, queue_name)
    for bad in ("", "x" * 256, "a\nb", "é", "tab\there"):
        with pytest.raises(ValueError, match="printable ASCII"):
            await store.begin("u", bad, b"")
    with pytest.raises(ValueError, match="invalid user id"):
        await store.begin("a b", "k", b"")


# Request rate


async def hit_until_allowed(limiter: RequestLimiter, user: str, deadline_s: float) -> None:
    """Poll ``hit`` until ``user`` is let in again, failing after ``deadline_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while (wait := await limiter.hit(user)) is not None:
        assert loop.time() < end, "still refused after the deadline"
        await asyncio.sleep(min(wait, 0.05))


async def test_a_burst_over_the_limit_is_refused_until_the_window_moves(
    redis: Redis, queue_name: str
) -> None:
    limiter = RequestLimiter(redis, queue_name, per_second=5)
    assert [await limiter.hit("a") for _ in range(5)] == [None] * 5
    retry_after = await limiter.hit("a")
    assert retry_after is not None
    assert 0 < retry_after <= 1
    # Users are independent: b is not limited by a's burst.
    assert await limiter.hit("b") is None
    # Allowed again once the burst's first request leaves the 1 s window.
    await hit_until_allowed(limiter, "a", deadline_s=retry_after + 1)
    [key] = [k for k in await keys_of(redis, queue_name) if k.endswith(":a")]
    assert key == f"iq:{{{queue_name}}}:ratelimit:a"


async def test_concurrent_hits_admit_exactly_the_limit(redis: Redis, queue_name: str) -> None:
    limiters = [RequestLimiter(redis, queue_name, per_second=10) for _ in range(3)]
    results = await asyncio.gather(*(limiters[i % 3].hit("u") for i in range(50)))
    assert results.count(None) == 10
    assert all(r is not None and 0 < r <= 1 for r in results if r is not None)


async def test_zero_disables_the_limit_without_calling_redis(
    unreachable: Redis, queue_name: str
) -> None:
    limiter = RequestLimiter(unreachable, queue_name, per_second=0)
    assert not limiter.enabled
    assert [await limiter.hit("u") for _ in range(100)] == [None] * 100
    with pytest.raises(ValueError, match="per_second"):
        RequestLimiter(unreachable, queue_name, per_second=-1)
