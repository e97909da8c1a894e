"""The engine's Lua scripts: read from ``lua/`` once, then called by SHA.

Each script is prefixed with ``_lib.lua`` (shared helpers). redis-py's ``Script`` calls
``EVALSHA`` and loads the script again only when the server answers ``NOSCRIPT`` (a restart).

:meth:`Scripts.call_coalesced` sends the calls made in one turn of the event loop as one
pipeline: under many concurrent callers (the API creating characters) that is one write,
one read and one pooled connection for the lot instead of per call, where redis-py's
per-command overhead costs more than the script itself. On a cluster the pipeline goes to
the primary of the queue's slot (every key of a queue is in that slot).
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib import resources
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from imagequeue_common.cluster import WaitingCluster, is_cluster_client
from imagequeue_common.mux import MuxRedis

_Call = tuple[str, list[str], list[Any], "asyncio.Future[Any]"]

AUTO_ACKS = -1
"""As ``acks``: on a cluster, one replica where the queue's primary has one; else none."""


class ReplicaAckError(RedisError):
    """The primary took the write but fewer replicas than required confirmed it in time:
    a failover now could lose it, so it is not acknowledged (the caller answers 503; the
    write may still survive, which an idempotency key makes harmless to retry)."""

    def __init__(self, acks: int, ack_ms: int, got: object) -> None:
        super().__init__(f"not confirmed by {acks} replica(s) within {ack_ms} ms (got {got})")


SCRIPT_NAMES = (
    "enqueue", "claim", "finish", "extend", "recover", "release", "progress",
    "cancel", "retry_failed", "clean", "stats", "hold", "permit", "promote", "remove", "rate",
    "clock", "predict",
)  # fmt: skip


@cache
def script_source(name: str) -> str:
    """The full text of script ``name``, shared helpers included."""
    folder = resources.files("imagequeue_common.queue") / "lua"
    lib = (folder / "_lib.lua").read_text(encoding="utf-8")
    return lib + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """The engine's scripts registered on one client."""

    def __init__(self, client: Redis, acks: int = 0, ack_ms: int = 1000) -> None:
        """``acks``: replicas that must have every coalesced call's writes before it is
        answered (one ``WAIT`` at the end of each pipeline; or :data:`AUTO_ACKS`); a call
        they did not confirm within ``ack_ms`` raises :class:`ReplicaAckError`."""
        self._client = client
        self._acks, self._ack_ms = acks, ack_ms
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name`` (EVALSHA, loading it first if the server lost it)."""
        script: AsyncScript = self._scripts[name]
        return await script(keys=keys, args=args)

    async def call_coalesced(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """:meth:`call`, sent together with the other calls of this event-loop turn.

        Each call still runs atomically on its own, and its reply or error is its own. A
        caller cancelled while waiting does not take its call back: it may already be sent.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((name, keys, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)  # a reference until it is done
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            replies = await self._pipelined(batch)
            lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if lost:  # the server lost its scripts (a restart): load them, send those again
                for name in {batch[i][0] for i in lost}:
                    await self._client.script_load(self._scripts[name].script)
                for i, reply in zip(lost, await self._pipelined([batch[i] for i in lost]),
                                    strict=True):  # fmt: skip
                    replies[i] = reply
        except BaseException as exc:  # the connection failed: every call in it did
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (*_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipelined(self, batch: list[_Call]) -> list[Any]:
        """Each call's reply or error, from one pipeline (ending in ``WAIT`` when replicas
        must confirm: it covers the writes of its own connection, so it goes in the same)."""
        commands: list[tuple[Any, ...]] = [
            ("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)
            for name, keys, args, _ in batch
        ]
        acks = await self._acks_for(batch[0][1][0])
        if acks:
            commands.append(("WAIT", acks, self._ack_ms))
        client = self._client
        if isinstance(client, MuxRedis) and client.mux is not None and not acks:
            # One connection sends them together already; each reply or error is its own.
            sent = (client.execute_command(*c) for c in commands)
            return await asyncio.gather(*sent, return_exceptions=True)
        if is_cluster_client(self._client):  # every key of a batch is in one queue's slot
            replies = await cast(WaitingCluster, self._client).node_pipeline(
                batch[0][1][0], commands)  # fmt: skip
        else:
            async with self._client.pipeline(transaction=False) as pipe:
                for command in commands:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        if not acks:
            return replies
        replies, acked = replies[:-1], replies[-1]
        if isinstance(acked, Exception) or int(acked) < acks:
            failed = ReplicaAckError(acks, self._ack_ms, acked)
            return [r if isinstance(r, NoScriptError) else failed for r in replies]
        return replies

    async def _acks_for(self, key: str) -> int:
        """Replicas that must confirm a write to ``key``: as configured, or with
        :data:`AUTO_ACKS` on a cluster one where the key's primary has a replica."""
        if self._acks != AUTO_ACKS:
            return self._acks
        if is_cluster_client(self._client):
            replicas = await cast(WaitingCluster, self._client).replicas_of(key)
            return 1 if replicas else 0
        return 0
