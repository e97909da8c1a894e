"""Redis Cluster: ``REDIS_URL=redis+cluster://…`` names some of the cluster's nodes.

The form::

    redis+cluster://[[user]:password@]host:port[,host:port…][?ssl=true]

The client learns the rest of the cluster from any node that answers and follows slot
moves. Every key of one queue carries the queue's hash tag (``{<queue>}``), so a queue
lives in one slot — each Lua script touches one node — and several queues spread over the
cluster's primaries. Database numbers do not exist in a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import AsyncIterator
from typing import Any, cast
from urllib.parse import parse_qs, unquote

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, PipelineCommand, RedisCluster
from redis.exceptions import ConnectionError, MovedError, TimeoutError

from imagequeue_common.errors import SettingsError

SCHEME = "redis+cluster://"


def is_cluster_url(url: str) -> bool:
    """True for a ``redis+cluster://`` URL."""
    return url.startswith(SCHEME)


def is_cluster_client(client: object) -> bool:
    """True for a client made by :func:`cluster_client`."""
    return isinstance(client, RedisCluster)


def parse_cluster_url(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The startup nodes and connection options of a ``redis+cluster://`` URL."""
    rest, _, query = url[len(SCHEME) :].partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    safe = SCHEME + hosts
    options: dict[str, Any] = {}
    if userinfo:
        user, _, secret = userinfo.partition(":")
        options.update(username=unquote(user) or None, password=unquote(secret) or None)
    nodes = []
    for part in hosts.split(","):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"REDIS_URL {safe}: {part!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if path.strip("/") not in ("", "0"):
        raise SettingsError(f"REDIS_URL {safe}: a cluster has no database {path!r}")
    flags = {k: v[-1] for k, v in parse_qs(query).items()}
    if set(flags) - {"ssl"}:
        raise SettingsError(f"REDIS_URL {safe}: unknown option(s) {sorted(set(flags) - {'ssl'})}")
    if flags.get("ssl", "false").lower() in {"1", "true", "yes"}:
        options["ssl"] = True
    return nodes, options


class WaitingCluster(RedisCluster):
    """A cluster client that is safe under many concurrent callers.

    Three things redis-py's cluster client (8.x) does differently, each seen failing
    dozens of concurrent commands at once:

    - It raises ``MaxConnectionsError`` once ``max_connections`` are busy on a node; the
      single-node command client's pool waits instead, and so does this (at most
      ``max_connections`` commands in flight, the rest queued in order).
    - A command issued before the client has learnt the slots (its first ones, or any
      while it relearns them) is routed to an arbitrary node and answered ``MOVED``; so
      this learns the slots before it routes a command.
    - Every fifth ``MOVED`` it closes every connection of every node, also those other
      commands are reading a reply on, which then fail with "Connection closed by
      server"; the retry of those fails the same way, a cascade. Here a ``MOVED`` only
      moves the slot it names (``reinitialize_steps=0``); a node that stops answering
      still makes the client relearn the whole cluster.
    """

    def __init__(self, *, max_connections: int, **kwargs: Any) -> None:
        super().__init__(max_connections=max_connections, reinitialize_steps=0, **kwargs)
        self._in_flight = asyncio.Semaphore(max_connections)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """One command, once the slots are known and fewer than ``max_connections`` are
        in flight."""
        async with self._in_flight, _closed_transport_is_a_lost_connection():
            if self._initialize:
                await self.initialize()
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> Any:
        """A pipeline that learns the slots first when they are due, and marks them due
        when its connection fails (see :class:`RelearningPipeline`)."""
        if shard_hint:
            return super().pipeline(transaction, shard_hint)  # refused there, as it says
        return RelearningPipeline(self, transaction)  # type: ignore[abstract]  # (redis-py's own is too)

    async def replicas_of(self, key: str) -> int:
        """How many replicas the primary of ``key``'s slot has (as last learnt)."""
        if self._initialize:
            await self.initialize()
        return len(self.nodes_manager.slots_cache[self.keyslot(key)]) - 1

    async def node_pipeline(self, key: str, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Each command's reply or error, all sent in one write on one connection to the
        primary of ``key``'s slot: so a ``WAIT`` at the end covers the writes before it,
        and ``EVALSHA`` can be pipelined (redis-py's cluster pipeline does neither).

        A ``MOVED`` answer or a failed connection makes the client relearn the slots and
        send the lot once more: a moved command did not run; one whose connection failed
        may have, so only commands that are safe to repeat belong here (every engine
        script is).
        """
        for last in (False, True):
            async with self._in_flight:
                if self._initialize:
                    await self.initialize()
                node = self.nodes_manager.get_node_from_slot(self.keyslot(key))
                sent = [PipelineCommand(i, *args) for i, args in enumerate(commands)]
                try:
                    async with _closed_transport_is_a_lost_connection():
                        await node.execute_pipeline(sent)
                except (ConnectionError, TimeoutError, OSError):
                    self._initialize = True
                    if last:
                        raise
                    continue
            replies = [command.result for command in sent]
            if last or not any(isinstance(reply, MovedError) for reply in replies):
                return replies
            self._initialize = True
        raise AssertionError("unreachable")  # pragma: no cover


class RelearningPipeline(ClusterPipeline):
    """redis-py's cluster pipeline, made to notice a failover.

    Its transactions (``MULTI``/``EXEC``) relearn the slots only every
    ``reinitialize_steps`` errors, which :class:`WaitingCluster` sets to 0 (never): a
    transaction on a dead primary's slot then failed for good (seen: still after 20 s,
    with the replica promoted after 2). A failed connection here marks the slots due, so
    this call fails and the next learns them first (the commands of a failed transaction
    may have run, so it is not sent again here)."""

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        client = cast(WaitingCluster, self.cluster_client)
        if client._initialize:
            await client.initialize()
        try:
            async with _closed_transport_is_a_lost_connection():
                return await super().execute(raise_on_error, allow_redirections)
        except (ConnectionError, TimeoutError, OSError):
            client._initialize = True
            raise


@contextlib.asynccontextmanager
async def _closed_transport_is_a_lost_connection() -> AsyncIterator[None]:
    """After a node fails, redis-py's cluster client closes the node's idle connections
    while another command may just have taken one of them; under uvloop that command's
    write then raises ``RuntimeError`` ("the handler is closed") instead of a connection
    error, and escaped every outage handler (seen in a failover test: a job's run failed
    with a traceback). Such an error is what it is: a lost connection."""
    try:
        yield
    except RuntimeError as exc:
        if not _transport_closed(exc):
            raise
        raise ConnectionError(f"the connection was closed under this command ({exc})") from exc


def _transport_closed(exc: RuntimeError) -> bool:
    """uvloop's error for a write on a closed transport (the only RuntimeError a socket
    write raises there)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return any(frame.name.endswith("_ensure_alive") for frame in frames) or "is closed" in str(exc)


def cluster_client(url: str, *, max_connections: int = 32, **kwargs: Any) -> Redis:
    """A cluster client; typed as :class:`Redis` because it speaks the same commands for
    keys of one slot, which is all the engine sends (``kwargs``: connection options)."""
    nodes, options = parse_cluster_url(url)
    kwargs.pop("timeout", None)  # the blocking pool's wait: the semaphore's here
    client = WaitingCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        max_connections=max_connections, **options, **kwargs,
    )  # fmt: skip
    return cast(Redis, client)
