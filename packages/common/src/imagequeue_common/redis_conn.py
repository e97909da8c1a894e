"""Redis clients for the engine: one for commands, one for blocking waits."""

from __future__ import annotations

from redis.asyncio import Redis


def command_client(url: str, *, max_connections: int = 32) -> Redis:
    """A client for short commands and scripts (replies are ``str``)."""
    return Redis.from_url(
        url,
        decode_responses=True,
        max_connections=max_connections,
        socket_connect_timeout=5,
        health_check_interval=30,
    )


def blocking_client(url: str) -> Redis:
    """A client whose socket never times out under a long ``BLPOP``."""
    return Redis.from_url(
        url,
        decode_responses=True,
        max_connections=4,
        socket_connect_timeout=5,
        socket_timeout=None,
    )
