"""SQLite through aiosqlite: one connection per store, WAL, a busy timeout, foreign keys.

One connection is enough (SQLite has a single writer anyway), but its statements must not
interleave: a coroutine reading while another is inside ``BEGIN … COMMIT`` on the same
connection would see uncommitted rows. So every session holds an :class:`asyncio.Lock`.
Other processes (the api and the workers share the file) wait up to the busy timeout.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from imagequeue_common.errors import StoreError, StoreUnavailableError
from imagequeue_common.store.sql import Dialect, Row

SQLITE = Dialect(name="sqlite", float_type="REAL", lock_row="", migration_lock=None)
BUSY_TIMEOUT_MS = 5000

# Primary result codes meaning "cannot get at the database now", not "bad statement".
_UNAVAILABLE_CODES = frozenset({
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_READONLY,
})  # fmt: skip


def _translate(exc: sqlite3.Error, path: str) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        return StoreUnavailableError(f"SQLite database {path!r} unavailable: {exc}")
    return StoreError(f"SQLite error on {path!r}: {exc}")


class _Session:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return list(await self._conn.execute_fetchall(sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(sql, args)

    async def execute_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        await self._conn.executemany(sql, rows)


class SqliteDatabase:
    """The :class:`~imagequeue_common.store.sql.Database` for one SQLite file."""

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str) -> SqliteDatabase:
        """Connect to ``path`` (creating its directory); ``StoreUnavailableError`` if it cannot."""
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; sessions issue BEGIN themselves.
            conn = await aiosqlite.connect(path, isolation_level=None)
        except OSError as exc:
            raise StoreUnavailableError(f"cannot create SQLite database {path!r}: {exc}") from exc
        except sqlite3.Error as exc:
            raise _translate(exc, path) from exc
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")  # durable enough under WAL
            await conn.execute("PRAGMA foreign_keys = ON")  # off by default; cascades need it
        except sqlite3.Error as exc:
            await conn.close()
            raise _translate(exc, path) from exc
        return cls(conn, path)

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[_Session]:
        """See :meth:`~imagequeue_common.store.sql.Database.transaction`."""
        async with self._lock:
            if self._conn is None:
                raise StoreError("the store is closed")
            conn = self._conn
            try:
                if not write:
                    yield _Session(conn)
                    return
                # IMMEDIATE takes the write lock up front: a deferred transaction that
                # upgrades later can fail with SQLITE_BUSY despite the busy timeout.
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield _Session(conn)
                    await conn.execute("COMMIT")
                except BaseException:
                    # Also after a failed COMMIT, which leaves the transaction open.
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise _translate(exc, self._path) from exc

    async def close(self) -> None:
        """See :meth:`~imagequeue_common.store.sql.Database.close`."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()
