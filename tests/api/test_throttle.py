"""The dashboard's login throttle in real Redis: counted before the check, locked at the limit."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from imagequeue_api.dashboard.throttle import Attempt, LoginThrottle
from tests.support.procs import wait_until

LOCKOUT_S = 60.0


def throttle(redis: Redis, queue: str, per_user: int = 5, per_address: int = 30,
             lockout_s: float = LOCKOUT_S) -> LoginThrottle:  # fmt: skip
    return LoginThrottle(redis, queue, per_user=per_user, per_address=per_address,
                         window_s=60, lockout_s=lockout_s)  # fmt: skip


async def test_five_tries_then_a_lock(redis: Redis, queue_name: str) -> None:
    gate = throttle(redis, queue_name)
    tries = [await gate.attempt("admin", "10.0.0.1") for _ in range(5)]
    assert tries[:4] == [Attempt()] * 4
    assert tries[4] == Attempt(locks_s=LOCKOUT_S)  # the last one allowed: wrong locks
    refused = await gate.attempt("admin", "10.0.0.1")
    assert LOCKOUT_S - 1 < refused.refused_s <= LOCKOUT_S
    # The username is locked from any address; another username is not.
    assert (await gate.attempt("admin", "10.0.0.2")).refused_s > 0
    assert await gate.attempt("watcher", "10.0.0.1") == Attempt()


async def test_concurrent_tries_get_exactly_the_limit(redis: Redis, queue_name: str) -> None:
    gates = [throttle(redis, queue_name) for _ in range(3)]  # three API processes
    tries = await asyncio.gather(*(gates[i % 3].attempt("admin", "a") for i in range(60)))
    assert sum(1 for t in tries if t.refused_s == 0) == 5
    assert sum(1 for t in tries if t.locks_s > 0) == 1


async def test_an_address_is_locked_across_usernames(redis: Redis, queue_name: str) -> None:
    gate = throttle(redis, queue_name, per_address=8)
    tries = [await gate.attempt(f"user-{i}", "10.0.0.9") for i in range(8)]
    assert [t.refused_s for t in tries] == [0] * 8
    assert tries[-1].locks_s == LOCKOUT_S
    assert (await gate.attempt("admin", "10.0.0.9")).refused_s > 0
    assert await gate.attempt("admin", "10.0.0.10") == Attempt()


async def test_a_right_password_clears_the_username(redis: Redis, queue_name: str) -> None:
    gate = throttle(redis, queue_name, per_address=10)
    for _ in range(4):
        await gate.attempt("admin", "a")
    await gate.attempt("admin", "a")  # the fifth try: the right password
    await gate.succeeded("admin", "a")
    assert [await gate.attempt("admin", "a") for _ in range(4)] == [Attempt()] * 4
    # The address kept its 4 + 4 failures; the success gave its own try back: 2 left.
    assert (await gate.attempt("other", "a")).locks_s == 0
    assert (await gate.attempt("other", "a")).locks_s == LOCKOUT_S


async def test_a_lock_ends_after_the_lockout(redis: Redis, queue_name: str) -> None:
    gate = throttle(redis, queue_name, per_user=2, lockout_s=0.3)
    await gate.attempt("admin", "a")
    assert (await gate.attempt("admin", "a")).locks_s == 0.3

    async def open_again() -> bool:
        return (await gate.attempt("admin", "a")).refused_s == 0

    await wait_until(open_again, 5, "the lockout to end")


async def test_keys_are_hashed_and_expire(redis: Redis, queue_name: str) -> None:
    gate = throttle(redis, queue_name)
    await gate.attempt("a\nvery long username " * 50, "::1")
    keys = [k async for k in redis.scan_iter(match=f"*{{{queue_name}}}*")]
    assert len(keys) == 2
    assert all(len(k) < 80 and "username" not in k for k in keys)
    assert [0 < await redis.pttl(k) <= 60_000 for k in keys] == [True, True]


def test_bad_limits_are_refused(redis: Redis, queue_name: str) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        throttle(redis, queue_name, per_user=0)
