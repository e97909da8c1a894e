"""Redis clients for the engine: one for commands, one for blocking waits.

Both retry a command once, on a fresh connection, when its connection fails or times out
(redis-py's default for clients built from a URL or a pool is no retry at all): after a
Redis restart every pooled connection is dead, and without this the first command on each
of them failed although Redis answered again. Pooled connections idle for
``HEALTH_CHECK_S`` are pinged before use, so a dead one is found before a request needs it.
A retry can only repeat a command whose reply was lost; every engine script is safe to
repeat (the enqueue refuses a job id it has, finishes and renewals are fenced by the lease
token, a claim whose reply was lost leaves its jobs to be recovered after their lease).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import RedisError, ResponseError

from imagequeue_common.cluster import cluster_client, is_cluster_url
from imagequeue_common.errors import SettingsError
from imagequeue_common.mux import MuxRedis
from imagequeue_common.sentinel import is_sentinel_url, sentinel_client

SAFE_POLICY = "noeviction"
HEALTH_CHECK_S = 30


def retry_once() -> Retry:
    """One more try on a fresh connection after a connection error or a timeout."""
    return Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=1)


def command_client(url: str, *, max_connections: int = 32) -> Redis:
    """A client for short commands and scripts (replies are ``str``).

    The pool blocks (up to 10 s) when all connections are busy instead of failing, so a
    burst of concurrent callers queues up rather than erroring. ``url`` may also be a
    ``redis+sentinel://`` or ``redis+cluster://`` URL (see ``imagequeue_common.sentinel``
    and ``imagequeue_common.cluster``).
    """
    return _client(url, waiting_pool=True, max_connections=max_connections, timeout=10)


def blocking_client(url: str, *, name: str | None = None) -> Redis:
    """A client whose socket never times out under a long ``BLPOP``; ``name``: every
    connection's name in ``CLIENT LIST`` (on every node of a cluster)."""
    return _client(url, waiting_pool=False, max_connections=4, socket_timeout=None,
                   client_name=name)  # fmt: skip


def _client(url: str, *, waiting_pool: bool, **options: Any) -> Redis:
    """A client of ``url`` (plain, Sentinel or Cluster) with the options both kinds share:
    decoded replies, one retry on a fresh connection, health checks of idle connections."""
    options.update(decode_responses=True, socket_connect_timeout=5,
                   health_check_interval=HEALTH_CHECK_S, retry=retry_once())  # fmt: skip
    if is_sentinel_url(url):
        return sentinel_client(url, blocking_pool=waiting_pool, **options)
    if is_cluster_url(url):
        return cluster_client(url, **options)
    if waiting_pool:
        return MuxRedis.over(BlockingConnectionPool.from_url(url, **options))
    return Redis.from_url(url, **options)


async def eviction_policy(client: Redis) -> str:
    """The server's ``maxmemory-policy`` (from CONFIG, else INFO where CONFIG is disabled)."""
    try:
        reply = await client.config_get("maxmemory-policy")
        policy = reply.get("maxmemory-policy")
    except ResponseError:
        policy = None
    if policy is None:
        policy = (await client.info("memory")).get("maxmemory_policy", "")
    return str(policy)


async def require_no_eviction(client: Redis) -> None:
    """Refuse a Redis that may evict keys: it would silently drop jobs and leases."""
    policy = await eviction_policy(client)
    if policy != SAFE_POLICY:
        raise SettingsError(
            f"Redis has maxmemory-policy {policy!r}, which can evict jobs; "
            f"set maxmemory-policy {SAFE_POLICY} (see infra/redis.conf)"
        )


async def preflight(url: str) -> None:
    """Before a process starts serving: Redis answers and will not evict (else raise)."""
    client = command_client(url)
    try:
        await require_no_eviction(client)
    finally:
        await client.aclose()


def preflight_ok(prog: str, url: str) -> bool:
    """Run :func:`preflight` for a command line; on failure print why and return False."""
    try:
        asyncio.run(preflight(url))
    except (SettingsError, RedisError, OSError) as exc:
        print(f"{prog}: cannot start: {exc}", file=sys.stderr)
        return False
    return True
