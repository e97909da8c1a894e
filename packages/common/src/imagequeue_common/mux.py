"""One multiplexed Redis connection per process: every coroutine's commands on one socket.

redis-py's asyncio client checks a pooled connection out for each command, writes it, waits
for its reply alone and checks the connection back in (locks, a retry wrapper and a timeout
around each step): about 60 µs of CPU per command on the reference machine, the largest
single part of an API request. Redis answers a connection's commands in the order they came,
so nothing needs a connection of its own to match a reply to its command: :class:`Mux`
gathers the commands that every coroutine sends in one turn of the event loop into a single
write, and hands the replies back in order from one read (hiredis parses them), about 3 µs a
command. Node's Redis clients (ioredis, which BullMQ uses) work this way.

Only commands that answer at once and leave no state on the connection go through it
(:data:`MUXED`): a blocking wait would hold up every command behind it, and ``SELECT``,
``WATCH``, ``MULTI`` or ``SUBSCRIBE`` would change the connection for everyone.
:class:`MuxRedis` sends the others, pipelines and pub/sub through its redis-py pool as before.

Failures keep redis-py's meaning. A lost connection fails the commands in flight with
``ConnectionError``; a command whose reply has not come for ``stall_s`` takes the connection
down with ``TimeoutError`` (a peer that vanished without closing). Either is tried once more
on a fresh connection, as :func:`imagequeue_common.redis_conn.retry_once` does for the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import socket
import time
from collections import deque
from typing import Any, Final

import hiredis
from redis._parsers.base import BaseParser
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import UnixDomainSocketConnection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

# fmt: off
MUXED: Final = frozenset((
    "GET", "SET", "SETNX", "SETEX", "PSETEX", "MGET", "MSET", "GETDEL", "INCR", "INCRBY",
    "INCRBYFLOAT", "DECR", "DECRBY", "APPEND", "STRLEN", "DEL", "UNLINK", "EXISTS", "TYPE",
    "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "TTL", "PTTL", "PERSIST", "HGET", "HSET",
    "HSETNX", "HMGET", "HMSET", "HGETALL", "HDEL", "HEXISTS", "HINCRBY", "HINCRBYFLOAT", "HKEYS",
    "HVALS", "HLEN", "LPUSH", "RPUSH", "LPOP", "RPOP", "LRANGE", "LLEN", "LTRIM", "LREM",
    "LINDEX", "LMOVE", "SADD", "SREM", "SMEMBERS", "SISMEMBER", "SMISMEMBER", "SCARD", "ZADD",
    "ZREM", "ZSCORE", "ZMSCORE", "ZCARD", "ZCOUNT", "ZRANGE", "ZRANGEBYSCORE", "ZREVRANGE",
    "ZREVRANGEBYSCORE", "ZRANK", "ZREVRANK", "ZINCRBY", "ZREMRANGEBYSCORE", "ZREMRANGEBYRANK",
    "ZPOPMIN", "ZPOPMAX", "XADD", "XLEN", "XRANGE", "XREVRANGE", "XDEL", "XTRIM", "XACK", "EVAL",
    "EVALSHA", "EVAL_RO", "EVALSHA_RO", "PING", "TIME", "DBSIZE",
))
# fmt: on
"""Commands that answer at once and leave the connection as it was."""
STALL_S = 30.0
CONNECT_S = 5.0


class _ReplyError(Exception):
    """An error reply from Redis, as hiredis hands it over (turned into redis-py's)."""


def _error(reply: _ReplyError) -> RedisError:
    """redis-py's exception for an error reply (``NOSCRIPT`` → ``NoScriptError``, …)."""
    error: RedisError = BaseParser.parse_error(str(reply))  # type: ignore[no-untyped-call]
    return error


class _Wire(asyncio.Protocol):
    """One connection: commands out in order, replies matched to them in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stall_s: float) -> None:
        self.loop = loop
        self.open = False
        self._stall_s = stall_s
        self._reader = hiredis.Reader(encoding="utf-8", replyError=_ReplyError)
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] = []
        self._transport: asyncio.Transport | None = None
        self._flush_due = False
        self._why: RedisError = RedisConnectionError("connection closed")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport, self.open = transport, True  # type: ignore[assignment]
        self.loop.call_later(self._stall_s / 4, self._watch)

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; its reply (or error) comes in the future."""
        if not self.open:
            raise self._failure()
        future: asyncio.Future[Any] = self.loop.create_future()
        self._waiting.append((future, time.monotonic()))
        self._out.append(packed)
        if not self._flush_due:
            self._flush_due = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_due = False
        if self._out and self._transport is not None and self.open:
            self._transport.write(b"".join(self._out))
        self._out.clear()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if not self._waiting:  # a reply nobody asked for: the stream is out of step
                self.close(RedisConnectionError("Redis sent a reply that was not asked for"))
                return
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open:
            self.open = False
            reason = f": {exc}" if exc else ""
            self._why = RedisConnectionError(f"connection to Redis lost{reason}")
        self._fail_all()

    def close(self, why: RedisError) -> None:
        """Take the connection down; everything in flight fails with ``why``."""
        if self.open:
            self.open, self._why = False, why
        if self._transport is None:
            pass
        elif self.loop.is_closed():  # asyncio can no longer close it: end the connection
            sock = self._transport.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        else:
            self._transport.abort()
        self._fail_all()

    def _failure(self) -> RedisError:
        # A fresh exception for each caller: one instance raised in many places would
        # collect every place's traceback for as long as an outage lasts.
        return type(self._why)(*self._why.args)

    def _fail_all(self) -> None:
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(self._failure())

    def _watch(self) -> None:
        if not self.open:
            return
        if self._waiting and time.monotonic() - self._waiting[0][1] > self._stall_s:
            self.close(RedisTimeoutError(f"no reply from Redis for {self._stall_s:g} s"))
            return
        self.loop.call_later(self._stall_s / 4, self._watch)


class Mux:
    """The multiplexed connection of one client to one Redis server (plain or unix)."""

    def __init__(self, kwargs: dict[str, Any], protocol: int, *, stall_s: float = STALL_S) -> None:
        self._kwargs = kwargs
        self._protocol = protocol
        self._stall_s = stall_s
        self._wire: _Wire | None = None
        self._opening: asyncio.Task[_Wire] | None = None

    async def call(self, packed: bytes) -> Any:
        """The raw reply to one packed command (an error reply comes back, not raised)."""
        wire = self._wire
        if wire is None or not wire.open or wire.loop is not asyncio.get_running_loop():
            wire = await self._connected()
        return await wire.send(packed)

    async def _connected(self) -> _Wire:
        loop = asyncio.get_running_loop()
        opening = self._opening
        if opening is None or opening.get_loop() is not loop:
            if self._wire is not None and self._wire.loop is not loop:
                self._wire.close(RedisConnectionError("client moved to another event loop"))
            opening = self._opening = loop.create_task(self._open(loop))
            opening.add_done_callback(self._opened)
        return await asyncio.shield(opening)

    def _opened(self, task: asyncio.Task[_Wire]) -> None:
        if self._opening is task:
            self._opening = None
        if not task.cancelled() and task.exception() is None:
            self._wire = task.result()

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Wire:
        kw = self._kwargs
        where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
        try:
            async with asyncio.timeout(kw.get("socket_connect_timeout") or CONNECT_S):
                if kw.get("path"):
                    _, wire = await loop.create_unix_connection(
                        lambda: _Wire(loop, self._stall_s), kw["path"]
                    )
                else:
                    _, wire = await loop.create_connection(
                        lambda: _Wire(loop, self._stall_s),
                        kw.get("host", "localhost"),
                        kw.get("port", 6379),
                    )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"Error connecting to {where}: {exc}") from exc
        hello: list[tuple[Any, ...]] = []
        password, user = kw.get("password"), kw.get("username")
        if self._protocol == 3:  # redis-py's replies are shaped by the protocol it speaks
            auth = ("AUTH", user or "default", password) if password is not None else ()
            hello.append(("HELLO", 3, *auth))
        elif password is not None:
            hello.append(("AUTH", user, password) if user else ("AUTH", password))
        if kw.get("db"):
            hello.append(("SELECT", kw["db"]))
        for reply in await asyncio.gather(*(wire.send(hiredis.pack_command(c)) for c in hello)):
            if isinstance(reply, _ReplyError):
                wire.close(RedisConnectionError("connection set-up refused"))
                raise _error(reply)
        return wire

    def close(self) -> None:
        """Close the connection (commands in flight fail)."""
        if self._wire is not None:
            self._wire.close(RedisConnectionError("client closed"))
            self._wire = None


class MuxRedis(Redis):
    """redis-py's client, whose simple commands (:data:`MUXED`) go through a :class:`Mux`;
    everything else (pipelines, blocking waits, pub/sub, multi-word commands) through its
    pool, as before. Replies go through redis-py's own response callbacks, so every command
    method answers what it answers on a plain client."""

    mux: Mux | None = None

    @classmethod
    def over(cls, pool: ConnectionPool) -> MuxRedis:
        """A client of ``pool``'s server; the mux only for TCP without TLS or a unix socket
        (a TLS pool keeps redis-py's connections for everything)."""
        client = cls(connection_pool=pool)
        client.auto_close_connection_pool = True  # as from_pool: the client owns the pool
        kind = pool.connection_class
        if kind.__name__ == "Connection" or issubclass(kind, UnixDomainSocketConnection):
            # The protocol redis-py's connections of this pool speak (RESP3 unless told).
            protocol = int(kind(**pool.connection_kwargs).protocol or 2)
            client.mux = Mux(dict(pool.connection_kwargs), protocol)
        return client

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        mux, name = self.mux, args[0]
        packed = None
        if mux is not None and name in MUXED and NEVER_DECODE not in options:
            # hiredis packs str, bytes, int and float as redis-py's encoder does, and
            # refuses the rest (None, bool, lists): redis-py then says why (DataError).
            with contextlib.suppress(TypeError):
                packed = hiredis.pack_command(args)
        if mux is None or packed is None:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        try:
            reply = await mux.call(packed)
            if isinstance(reply, _ReplyError) and isinstance(_error(reply), RedisConnectionError):
                raise _error(reply)  # LOADING (a restarted Redis reading its file): retry too
        except (RedisConnectionError, RedisTimeoutError):
            await asyncio.sleep(random.uniform(0.05, 0.25))  # noqa: S311 - jitter, not a secret
            reply = await mux.call(packed)
        if isinstance(reply, _ReplyError):
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise _error(reply)
        options.pop(EMPTY_RESPONSE, None)
        options.pop("keys", None)
        callback = self.response_callbacks.get(name)
        if callback is None:
            return reply
        parsed = callback(reply, **options)
        return await parsed if inspect.isawaitable(parsed) else parsed

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self.mux is not None:
            self.mux.close()
        await super().aclose(close_connection_pool)
