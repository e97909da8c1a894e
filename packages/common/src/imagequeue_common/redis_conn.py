"""Redis clients for the engine: one for commands, one for blocking waits."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis


def command_client(url: str, *, max_connections: int = 32) -> Redis:
    """A client for short commands and scripts (replies are ``str``).

    The pool blocks (up to 10 s) when all connections are busy instead of failing, so a
    burst of concurrent callers queues up rather than erroring.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        timeout=10,
        socket_connect_timeout=5,
        health_check_interval=30,
    )
    return Redis.from_pool(pool)


def blocking_client(url: str) -> Redis:
    """A client whose socket never times out under a long ``BLPOP``."""
    return Redis.from_url(
        url,
        decode_responses=True,
        max_connections=4,
        socket_connect_timeout=5,
        socket_timeout=None,
    )
