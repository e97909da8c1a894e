"""Redis behind Sentinel: ``REDIS_URL=redis+sentinel://…`` names the sentinels and the master.

The form (one URL, so every process and command that takes ``REDIS_URL`` takes it too)::

    redis+sentinel://[[user]:password@]host:port[,host:port…]/master-name[/db][?options]

``user``/``password`` are the Redis data nodes' (ACL user or ``requirepass``); the options
are ``sentinel_password`` (when the sentinels ask for one: ``requirepass`` in their
configuration) and ``ssl=true`` (TLS to the data nodes). Every connection asks the
sentinels for the current master when it connects, and a connection still open to a
master that was demoted (``READONLY``) is dropped and connects again — to the new one.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote

import msgspec
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from imagequeue_common.errors import SettingsError

SCHEME = "redis+sentinel://"


class SentinelTarget(msgspec.Struct, frozen=True):
    """Where the master is found, and how to talk to it."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False


def is_sentinel_url(url: str) -> bool:
    """True for a ``redis+sentinel://`` URL."""
    return url.startswith(SCHEME)


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The target of a ``redis+sentinel://`` URL; :class:`SettingsError` saying what is wrong."""
    if not is_sentinel_url(url):
        raise SettingsError(f"not a {SCHEME} URL: {url!r}")
    rest, _, query = url[len(SCHEME) :].partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username = password = None
    if userinfo:
        user, _, secret = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    sentinels = tuple(_host_port(part, url) for part in hosts.split(",") if part)
    if not sentinels:
        raise SettingsError(f"REDIS_URL {_safe(url)}: name at least one sentinel as host:port")
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise SettingsError(f"REDIS_URL {_safe(url)}: the path is /master-name or /master-name/db")
    db = 0
    if len(parts) == 2:
        if not parts[1].isdigit():
            raise SettingsError(f"REDIS_URL {_safe(url)}: the database must be a number")
        db = int(parts[1])
    options = {k: v[-1] for k, v in parse_qs(query).items()}
    unknown = set(options) - {"sentinel_password", "ssl"}
    if unknown:
        raise SettingsError(f"REDIS_URL {_safe(url)}: unknown option(s) {sorted(unknown)}")
    return SentinelTarget(
        sentinels=sentinels, master=unquote(parts[0]), db=db, username=username,
        password=password, sentinel_password=options.get("sentinel_password"),
        ssl=options.get("ssl", "false").lower() in {"1", "true", "yes"},
    )  # fmt: skip


def _host_port(part: str, url: str) -> tuple[str, int]:
    host, _, port = part.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"REDIS_URL {_safe(url)}: {part!r} is not host:port")
    return host.strip("[]"), int(port)


def _safe(url: str) -> str:
    """The URL without its credentials, for messages."""
    rest = url[len(SCHEME) :]
    return SCHEME + rest.rpartition("@")[2]


class SentinelBlockingPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool that waits for a free connection instead of failing (as the command
    client's pool does without Sentinel)."""


class SentinelRedis(Redis):
    """A master client that also closes its connections to the sentinels."""

    sentinel_manager: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the client, its pool and the sentinel connections."""
        await super().aclose(close_connection_pool)
        manager, self.sentinel_manager = self.sentinel_manager, None
        for sentinel in manager.sentinels if manager else []:
            await sentinel.aclose()


def sentinel_client(url: str, *, blocking_pool: bool, **kwargs: Any) -> Redis:
    """A client of the master that the sentinels of ``url`` name; ``kwargs`` go to every
    data-node connection (timeouts, retry, decoding, pool size)."""
    target = parse_sentinel_url(url)
    sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2}
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    manager = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    pool_class = SentinelBlockingPool if blocking_pool else SentinelConnectionPool
    if target.ssl:
        kwargs["ssl"] = True
    client: SentinelRedis = manager.master_for(
        target.master, redis_class=SentinelRedis, connection_pool_class=pool_class,
        db=target.db, username=target.username, password=target.password, **kwargs,
    )  # fmt: skip
    client.sentinel_manager = manager
    return client
