"""MongoDB for store tests: mongomock behind a small shim, or the real server named by
``TEST_MONGODB_URL``; a fresh database per test; raw access for the few assertions the
store's API cannot make.

The store talks to pymongo's ``AsyncMongoClient``; mongomock-motor imitates Motor, whose
API differs in a few places Beanie 2.x and the store use. The shim patches exactly those,
on subclasses (nothing global):

1. ``AsyncMongoMockDatabase.list_collection_names`` forwards its keyword arguments to
   mongomock, which accepts only ``filter`` and ``session``; ``init_beanie`` passes
   ``authorizedCollections=True, nameOnly=True`` (options for access control and speed
   that do not change the answer here), so they are dropped.
2. ``AsyncMongoMockClient.close`` is mongomock's synchronous no-op (Motor's is sync too);
   pymongo's async client's ``close`` is a coroutine, which the store awaits.
3. Not a compatibility fix but a fidelity one: mongomock-motor's coroutines never
   suspend, so ``asyncio.gather`` of store calls would run them one after another and
   the race tests would race nothing. Each single-document operation first yields to
   the event loop, as a round trip to a server would; the operation itself stays
   atomic, as on a server. (Cursor reads, ``find(...).to_list()``, do not yield.)
"""

from __future__ import annotations

import asyncio
import gc
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import mongomock
import pytest
from mongomock.store import ServerStore
from mongomock_motor import AsyncMongoMockClient, AsyncMongoMockCollection, AsyncMongoMockDatabase
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from imagequeue_common.store import mongo
from imagequeue_common.store.mongo_models import SCHEMA_DOCUMENT_ID
from tests.support.databases import TestDatabase

Connect = Callable[[str], AsyncMongoClient[Any]]


def _round_trip(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def yielding_first(self: Any, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)  # patch 3: let other coroutines run, as the network would
        return await method(self, *args, **kwargs)

    return yielding_first


class _ShimCollection(AsyncMongoMockCollection):  # type: ignore[type-arg]  # not generic at runtime
    pass


for _name in ("count_documents", "delete_many", "delete_one", "find_one", "find_one_and_update",
              "insert_one", "update_one"):  # fmt: skip  # what the store's calls come down to
    setattr(_ShimCollection, _name, _round_trip(getattr(AsyncMongoMockCollection, _name)))


class _ShimDatabase(AsyncMongoMockDatabase):  # type: ignore[type-arg]  # not generic at runtime
    async def list_collection_names(  # type: ignore[override]
        self, filter: dict[str, Any] | None = None, session: Any = None, **_: Any
    ) -> list[str]:
        # Patch 1: drop authorizedCollections / nameOnly (see the module doc).
        names: list[str] = self.delegate.list_collection_names(filter=filter, session=session)
        return names

    def get_collection(self, *args: Any, **kwargs: Any) -> _ShimCollection:
        collection = self.delegate.get_collection(*args, **kwargs)
        return _ShimCollection(self, collection)  # type: ignore[arg-type]  # stub: Motor's signature


class _ShimClient(AsyncMongoMockClient):  # type: ignore[type-arg]  # not generic at runtime
    def get_database(self, *args: Any, **kwargs: Any) -> _ShimDatabase:
        plain = super().get_database(*args, **kwargs)
        return _ShimDatabase(self, plain.delegate)

    async def close(self) -> None:  # type: ignore[override]
        # Patch 2: awaitable, like pymongo's; mongomock has nothing to release.
        return None


class MockMongoServer:
    """One in-memory MongoDB: every client :meth:`connect` makes shares its data."""

    def __init__(self) -> None:
        self._store = ServerStore()  # type: ignore[no-untyped-call]  # mongomock is untyped

    def connect(self, url: str) -> AsyncMongoClient[Any]:
        """Stands in for :func:`imagequeue_common.store.mongo.connect`."""
        sync: mongomock.MongoClient[Any] = mongomock.MongoClient(url, _store=self._store)
        return cast("AsyncMongoClient[Any]", _ShimClient(mock_mongo_client=sync))


async def run_collecting_leaked_sockets(check: Awaitable[None]) -> None:
    """Await ``check`` (which closes clients of a dead server), then collect, without
    the warning, the sockets pymongo leaked.

    pymongo 4.20's async connect closes its new socket on ``OSError`` and ``TimeoutError``
    only. Closing a client cancels a monitor task still connecting to a dead server, and
    that socket stays referenced from the client until the garbage collector frees it;
    its ``ResourceWarning`` would then fail whichever later test the collection happens
    in. So ``check`` must hold the clients in its own locals, gone once it returns.
    """
    try:
        await check
    finally:
        del check
        pymongo_tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("pymongo_")]
        if pymongo_tasks:
            await asyncio.wait(pymongo_tasks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


def find_mongodb() -> str:
    """``TEST_MONGODB_URL``, or skip (the mongomock half of the MongoDB tests still runs)."""
    url = os.environ.get("TEST_MONGODB_URL", "").strip()
    if not url:
        pytest.skip("no real MongoDB: TEST_MONGODB_URL is unset (the mongomock cases still run)")
    return url


def fresh_database_name() -> str:
    """A database name of this test's own."""
    return f"t_{uuid.uuid4().hex[:16]}"


def with_database(url: str, name: str) -> str:
    """``url`` with its path (the database) replaced by ``name``; the query stays."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@dataclass(frozen=True)
class MongoTestDatabase(TestDatabase):
    """One test's MongoDB database: ``url`` for ``open_store``, ``connect`` for clients
    onto the same server, and ``fetch`` for the raw statements the contract tests make."""

    __test__ = False
    connect: Connect = mongo.connect
    name: str = ""

    @asynccontextmanager
    async def raw(self) -> AsyncIterator[AsyncDatabase[Any]]:
        """The database through a client of its own, for what the store's API cannot do."""
        client = self.connect(self.url)
        try:
            yield client[self.name]
        finally:
            await client.close()

    async def fetch(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run one of :data:`_STATEMENTS`, the contract tests' raw SQL, as MongoDB operations."""
        statement = _STATEMENTS.get(sql)
        if statement is None:
            raise NotImplementedError(f"no MongoDB equivalent for {sql!r}")
        async with self.raw() as db:
            return await statement(db, *args)

    async def drop(self) -> None:
        """Drop the database and everything in it."""
        async with self.raw() as db:
            await db.client.drop_database(self.name)


async def _rename_pose(db: AsyncDatabase[Any], name: str, pose_id: str) -> list[tuple[Any, ...]]:
    await db["poses"].update_one({"_id": pose_id}, {"$set": {"name": name}})
    return []


async def _schema_versions(db: AsyncDatabase[Any]) -> list[tuple[Any, ...]]:
    marker = await db["schema_version"].find_one({"_id": SCHEMA_DOCUMENT_ID})
    return [] if marker is None else [(int(marker["version"]),)]


async def _set_schema_version(db: AsyncDatabase[Any], version: int) -> list[tuple[Any, ...]]:
    await db["schema_version"].update_one(
        {"_id": SCHEMA_DOCUMENT_ID}, {"$set": {"version": version}}
    )
    return []


# The contract tests' raw SQL, each as the MongoDB operations that mean the same.
_STATEMENTS: dict[str, Callable[..., Awaitable[list[tuple[Any, ...]]]]] = {
    "UPDATE poses SET name = ? WHERE id = ?": _rename_pose,
    "SELECT version FROM schema_version": _schema_versions,
    "UPDATE schema_version SET version = ?": _set_schema_version,
}
