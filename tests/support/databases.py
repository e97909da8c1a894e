"""Databases for store tests: a PostgreSQL server if one answers, a fresh schema per test,
raw access for assertions the store's API cannot make, and a TCP proxy that can be cut."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from imagequeue_common.store.postgres import numbered

DEFAULT_TEST_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def find_postgres() -> str:
    """``TEST_POSTGRES_URL``, else the conventional local server if its port answers.

    With neither, the test is skipped, or failed when ``CI`` is set: CI must not go green
    by silently skipping the PostgreSQL half of the contract tests.
    """
    url = os.environ.get("TEST_POSTGRES_URL", "").strip()
    if url:
        return url
    parts = urlsplit(DEFAULT_TEST_POSTGRES_URL)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1.0):
            return DEFAULT_TEST_POSTGRES_URL
    except OSError as exc:
        error = exc
    raise _unavailable(
        f"no PostgreSQL: TEST_POSTGRES_URL is unset and {parts.hostname}:{parts.port} "
        f"does not answer ({error})"
    )


def _unavailable(reason: str) -> BaseException:
    """What ``pytest.skip`` raises, or what ``pytest.fail`` raises when ``CI`` is set."""
    if os.environ.get("CI"):
        message = f"{reason} (CI is set, so this is a failure, not a skip)"
        return pytest.fail.Exception(message, pytrace=False)
    return pytest.skip.Exception(reason)


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``schema=<schema>`` added to its query."""
    return f"{url}{'&' if urlsplit(url).query else '?'}schema={schema}"


@asynccontextmanager
async def fresh_schema(admin_url: str) -> AsyncIterator[str]:
    """A new, empty schema with a random name; dropped with everything in it afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f"CREATE SCHEMA {name}")
        yield name
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        await conn.close()


@dataclass(frozen=True)
class TestDatabase:
    """One test's database: the URL for ``open_store`` plus raw SQL (``?`` placeholders)."""

    __test__ = False  # not a test class, whatever its name
    kind: str
    url: str
    sqlite_path: Path | None = None
    admin_url: str | None = None
    schema: str | None = None

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Rows of ``sql``, run outside the store."""
        if self.sqlite_path is not None:
            lite = sqlite3.connect(self.sqlite_path)
            try:
                with lite:  # commits a write
                    return lite.execute(sql, args).fetchall()
            finally:
                lite.close()
        assert self.admin_url is not None
        assert self.schema is not None
        pg = await asyncpg.connect(self.admin_url, server_settings={"search_path": self.schema})
        try:
            return [tuple(r) for r in await pg.fetch(numbered(sql), *args)]
        finally:
            await pg.close()


def closed_port() -> int:
    """A local TCP port that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class TcpProxy:
    """Forwards a local port to ``host:port`` until :meth:`cut` drops every connection
    and closes the port: a database server vanishing, as its clients see it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int = 0) -> int:
        """Listen (on ``port``, else a free one); returns the local port."""
        self._writers = []
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        except OSError:
            writer.close()
            return
        self._writers.append(up_writer)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def cut(self) -> None:
        """Stop listening and close every forwarded connection."""
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        for writer in self._writers:
            await writer.wait_closed()
        await self._server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass  # the other side went away: that is what cut() is for
    finally:
        writer.close()


class ThreadedProxy:
    """A :class:`TcpProxy` on an event loop of its own thread: for code under test that
    blocks the test's loop while it waits (Litestar's test client runs the app's lifespan
    through a blocking portal)."""

    def __init__(self, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._proxy = TcpProxy(host, port)

    def start(self, port: int = 0) -> int:
        """Listen (on ``port``, else a free one); returns the local port."""
        return asyncio.run_coroutine_threadsafe(self._proxy.start(port), self._loop).result(10)

    def cut(self) -> None:
        """Close the port and every forwarded connection."""
        asyncio.run_coroutine_threadsafe(self._proxy.cut(), self._loop).result(10)

    def close(self) -> None:
        """Stop the thread's loop."""
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
