"""PostgreSQL through an asyncpg pool: small (1 to 10 connections), with connect and command
timeouts so a dead server fails an operation instead of hanging it.

With a ``schema``, every pooled connection gets ``search_path = <schema>``: the store's
tables live there and nothing outside it is read or written (tests give each case a fresh
schema; deployments can share one database between instances).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from imagequeue_common.errors import SettingsError, StoreError, StoreUnavailableError
from imagequeue_common.store.sql import Dialect, Row

POSTGRES = Dialect(
    name="postgresql",
    float_type="DOUBLE PRECISION",
    lock_row=" FOR UPDATE",
    # Transaction-scoped, so it is released by COMMIT or ROLLBACK, whatever happens.
    migration_lock=(
        "SELECT pg_advisory_xact_lock("
        "hashtext('imagequeue.store.migrate:' || coalesce(current_schema(), '')))"
    ),
)
POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0

# Failures meaning "the server cannot be reached or cannot serve now" (try again later):
# sockets, timeouts, SQLSTATE classes 08 (connection), 57 (shutdown) and 53 (resources).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


@functools.lru_cache(maxsize=1024)  # the multi-row INSERTs too
def numbered(sql: str) -> str:
    """``sql`` with its ``?`` placeholders renumbered ``$1, $2, …`` for PostgreSQL."""
    counter = itertools.count(1)
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


class _Session:
    def __init__(self, conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> None:
        self._conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return [tuple(record) for record in await self._conn.fetch(numbered(sql), *args)]

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        record = await self._conn.fetchrow(numbered(sql), *args)
        return None if record is None else tuple(record)

    async def execute(self, sql: str, *args: Any) -> None:
        await self._conn.execute(numbered(sql), *args)

    async def execute_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        await self._conn.executemany(numbered(sql), rows)


class PostgresDatabase:
    """The :class:`~imagequeue_common.store.sql.Database` for one PostgreSQL schema.

    ``label`` names the server in messages; it never holds the password.
    """

    dialect = POSTGRES

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], label: str) -> None:
        self._pool: asyncpg.Pool[asyncpg.Record] | None = pool
        self._label = label

    @classmethod
    async def open(cls, dsn: str, *, schema: str | None, label: str) -> PostgresDatabase:
        """Start the pool (one connection right away) and check that ``schema`` exists."""
        settings = {"search_path": schema} if schema else None
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=POOL_MIN_SIZE, max_size=POOL_MAX_SIZE, timeout=CONNECT_TIMEOUT_S,
                command_timeout=COMMAND_TIMEOUT_S, server_settings=settings,
            )  # fmt: skip
        except asyncpg.ClientConfigurationError as exc:
            raise SettingsError(f"DATABASE_URL is not a usable PostgreSQL URL: {exc}") from exc
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"PostgreSQL {label} unavailable: {exc!r}") from exc
        except asyncpg.PostgresError as exc:
            raise StoreError(f"PostgreSQL {label} refused the connection: {exc}") from exc
        db = cls(pool, label)
        if schema and not await db._schema_exists(schema):
            await db.close()
            raise SettingsError(f"DATABASE_URL names schema {schema!r}, which does not exist")
        return db

    async def _schema_exists(self, schema: str) -> bool:
        async with self.transaction(write=False) as s:
            sql = "SELECT 1 FROM pg_namespace WHERE nspname = ?"
            return await s.fetchrow(sql, schema) is not None

    @asynccontextmanager
    async def transaction(self, *, write: bool = True) -> AsyncIterator[_Session]:
        """See :meth:`~imagequeue_common.store.sql.Database.transaction`."""
        pool = self._pool
        if pool is None:
            raise StoreError("the store is closed")
        try:
            async with pool.acquire() as conn:
                if not write:
                    yield _Session(conn)
                    return
                async with conn.transaction():
                    yield _Session(conn)
        except _UNAVAILABLE as exc:
            raise StoreUnavailableError(f"PostgreSQL {self._label} unavailable: {exc!r}") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StoreError(f"PostgreSQL error on {self._label}: {exc}") from exc

    async def close(self) -> None:
        """See :meth:`~imagequeue_common.store.sql.Database.close`."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            # close() waits for connections in use to come back; do not wait forever.
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            pool.terminate()
