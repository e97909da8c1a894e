"""The character store's contract, run on SQLite, PostgreSQL and MongoDB alike.

PostgreSQL comes from ``TEST_POSTGRES_URL`` or the local default; each test gets a schema
of its own (``?schema=`` in the store's URL) that is dropped afterwards. MongoDB runs twice:
on mongomock (``tests/support/mongo.py`` says what its shim patches), and on the real
server of ``TEST_MONGODB_URL`` when that is set; each test gets a database of its own,
dropped afterwards.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec
import pytest
from bson import ObjectId

from imagequeue_common.errors import (
    CharacterNotFoundError,
    PoseNotFoundError,
    SettingsError,
    StoreError,
    StoreUnavailableError,
)
from imagequeue_common.store import (
    DEFAULT_DATABASE_URL,
    DEFAULT_POSES,
    Character,
    CharacterStore,
    NewCharacter,
    mongo,
    open_store,
)
from imagequeue_common.store.schema import SCHEMA_VERSION
from tests.support.databases import (
    TcpProxy,
    TestDatabase,
    closed_port,
    find_postgres,
    fresh_schema,
    with_schema,
)
from tests.support.mongo import (
    MockMongoServer,
    MongoTestDatabase,
    find_mongodb,
    fresh_database_name,
    run_collecting_leaked_sockets,
    with_database,
)

POSE = DEFAULT_POSES[0].id


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The PostgreSQL server's URL (skip, or fail under CI, when there is none)."""
    return find_postgres()


@pytest.fixture(scope="session")
def mongodb_url() -> str:
    """The real MongoDB server's URL (skip when ``TEST_MONGODB_URL`` is unset)."""
    return find_mongodb()


@pytest.fixture(params=["sqlite", "postgresql", "mongomock", "mongodb"])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TestDatabase]:
    """A fresh, empty database: an SQLite file, a new PostgreSQL schema, or a new MongoDB
    database (in mongomock, or on ``TEST_MONGODB_URL``)."""
    if request.param == "sqlite":
        path = tmp_path / "store.db"
        yield TestDatabase("sqlite", f"sqlite:///{path}", sqlite_path=path)
        return
    if request.param in ("mongomock", "mongodb"):
        async with _mongo_database(request) as db:
            yield db
        return
    admin_url: str = request.getfixturevalue("postgres_url")
    async with fresh_schema(admin_url) as schema:
        url = with_schema(admin_url, schema)
        yield TestDatabase("postgresql", url, admin_url=admin_url, schema=schema)


@pytest.fixture(params=["mongomock", "mongodb"])
async def mongo_database(request: pytest.FixtureRequest) -> AsyncIterator[MongoTestDatabase]:
    """A fresh MongoDB database, for the cases only MongoDB has."""
    async with _mongo_database(request) as db:
        yield db


@asynccontextmanager
async def _mongo_database(request: pytest.FixtureRequest) -> AsyncIterator[MongoTestDatabase]:
    name = fresh_database_name()
    if request.param == "mongomock":
        # open_store(url) reaches mongomock through the adapter's one client factory, so
        # the URL handling runs as it does for a real server.
        server = MockMongoServer()
        request.getfixturevalue("monkeypatch").setattr(mongo, "connect", server.connect)
        url = f"mongodb://mongomock.invalid/{name}"
        yield MongoTestDatabase("mongomock", url, connect=server.connect, name=name)
        return
    server_url: str = request.getfixturevalue("mongodb_url")
    db = MongoTestDatabase("mongodb", with_database(server_url, name), name=name)
    try:
        yield db
    finally:
        await db.drop()


@pytest.fixture
async def store(database: TestDatabase) -> AsyncIterator[CharacterStore]:
    """An open store on this test's database."""
    s = await open_store(database.url)
    yield s
    await s.close()


async def make(store: CharacterStore, user: str = "u1", name: str = "Ada", **kw: Any) -> Character:
    return await store.create_character(NewCharacter(user, name, POSE, **kw))


async def test_create_get_round_trip(store: CharacterStore) -> None:
    personality = {"traits": ["brave", "curious"], "age": 27, "ünï": "😀 \x00 ok",
                   "nested": {"x": 1.5, "ok": True, "none": None}}  # fmt: skip
    before = time.time()
    created = await make(store, "user:1.a-b_c", "  Zoë 李 🐉  ", description="Ünïcode ✓",
                         personality=personality, image_job_id="job-0")  # fmt: skip
    assert created.name == "Zoë 李 🐉"
    assert re.fullmatch(r"[0-9a-f]{24}", created.id)
    assert before <= created.created_at == created.updated_at <= time.time()
    got = await store.get_character(created.id)
    assert got == created
    assert got.personality == personality
    assert got.display_image_urls == []
    assert (got.user_id, got.pose_id, got.image_job_id) == ("user:1.a-b_c", POSE, "job-0")


async def test_unknown_ids_raise_typed_errors(store: CharacterStore) -> None:
    missing = "0" * 24
    with pytest.raises(CharacterNotFoundError) as err:
        await store.get_character(missing)
    assert err.value.character_id == missing
    with pytest.raises(PoseNotFoundError) as pose_err:
        await store.get_pose("pose-nope")
    assert pose_err.value.pose_id == "pose-nope"
    with pytest.raises(CharacterNotFoundError):
        await store.set_image_job(missing, "job-1")
    assert await store.image_for_job("job-nope") is None
    assert await store.delete_character(missing) is False


async def test_create_with_unknown_pose_writes_nothing(store: CharacterStore) -> None:
    with pytest.raises(PoseNotFoundError):
        await store.create_character(NewCharacter("u1", "Ada", "pose-nope"))
    assert await store.count_characters("u1") == 0
    assert await store.list_characters("u1") == []


async def test_concurrent_creations_each_get_their_own_answer(store: CharacterStore) -> None:
    # Arriving together, they are written in batches (group commit on the SQL stores); one
    # bad pose in a batch fails that creation only.
    news = [NewCharacter("u1", f"c{i}", "pose-standing") for i in range(120)]
    news[57] = NewCharacter("u1", "lost", "pose-nope")
    results = await asyncio.gather(*(store.create_character(n) for n in news),
                                   return_exceptions=True)  # fmt: skip
    assert isinstance(results[57], PoseNotFoundError)
    made = [r for r in results if isinstance(r, Character)]
    assert len(made) == 119
    assert await store.count_characters("u1") == 119
    listed = {c.id for c in await store.list_characters("u1", limit=100)}
    listed |= {c.id for c in await store.list_characters("u1", limit=100, offset=100)}
    assert listed == {c.id for c in made}
    fine = [NewCharacter("u2", f"d{i}", "pose-sitting") for i in range(50)]
    more = await asyncio.gather(*(store.create_character(n) for n in fine))
    assert len({c.id for c in more}) == 50
    assert await store.count_characters("u2") == 50


async def test_list_is_own_newest_first_paginated_and_counted(store: CharacterStore) -> None:
    mine = [await make(store, "u1", f"c{i}") for i in range(3)]
    other = await make(store, "u2", "theirs")
    newest_first = [c.id for c in reversed(mine)]
    assert [c.id for c in await store.list_characters("u1")] == newest_first
    assert [c.id for c in await store.list_characters("u1", limit=2)] == newest_first[:2]
    assert [c.id for c in await store.list_characters("u1", limit=2, offset=2)] == newest_first[2:]
    assert await store.list_characters("u1", offset=3) == []
    assert (await store.count_characters("u1"), await store.count_characters("u2")) == (3, 1)
    assert await store.list_characters("u2") == [other]
    assert await store.count_characters("nobody") == 0


async def test_list_carries_each_characters_images(store: CharacterStore) -> None:
    a, b = await make(store, name="a"), await make(store, name="b")
    await store.append_image(a.id, "ja1", "/a1.png")
    await store.append_image(b.id, "jb1", "/b1.png")
    await store.append_image(a.id, "ja2", "/a2.png")
    listed = {c.id: c.display_image_urls for c in await store.list_characters("u1")}
    assert listed == {a.id: ["/a1.png", "/a2.png"], b.id: ["/b1.png"]}


async def test_append_image_is_once_per_job_and_keeps_order(store: CharacterStore) -> None:
    c = await make(store)
    assert await store.append_image(c.id, "job-a", "/a.png") is True
    assert await store.append_image(c.id, "job-a", "/a-again.png") is False
    assert await store.append_image(c.id, "job-b", "/b.png") is True
    assert await store.append_image(c.id, "job-c", "/c.png") is True
    got = await store.get_character(c.id)
    assert got.display_image_urls == ["/a.png", "/b.png", "/c.png"]
    assert got.updated_at > c.updated_at


async def test_concurrent_appends_of_one_job_add_one_image(store: CharacterStore) -> None:
    c = await make(store)
    added = await asyncio.gather(
        *(store.append_image(c.id, "job-1", f"/{i}.png") for i in range(50))
    )
    assert added.count(True) == 1
    winner = f"/{added.index(True)}.png"
    assert (await store.get_character(c.id)).display_image_urls == [winner]
    assert await store.image_for_job("job-1") == winner


async def test_concurrent_appends_of_different_jobs_lose_none(store: CharacterStore) -> None:
    c = await make(store)
    added = await asyncio.gather(
        *(store.append_image(c.id, f"job-{i}", f"/{i}.png") for i in range(20))
    )
    assert all(added)
    assert sorted((await store.get_character(c.id)).display_image_urls) == sorted(
        f"/{i}.png" for i in range(20)
    )


async def test_image_for_job_and_set_image_job(store: CharacterStore) -> None:
    c = await make(store)
    await store.set_image_job(c.id, "job-9")
    assert (await store.get_character(c.id)).image_job_id == "job-9"
    assert await store.image_for_job("job-9") is None
    await store.append_image(c.id, "job-9", "/9.png")
    assert await store.image_for_job("job-9") == "/9.png"
    await store.set_image_job(c.id, None)
    assert (await store.get_character(c.id)).image_job_id is None


async def test_append_to_deleted_character_raises(store: CharacterStore) -> None:
    c = await make(store)
    assert await store.delete_character(c.id) is True
    with pytest.raises(CharacterNotFoundError):
        await store.append_image(c.id, "job-late", "/late.png")
    assert await store.image_for_job("job-late") is None


async def test_delete_twice_and_images_go(store: CharacterStore) -> None:
    c, keep = await make(store), await make(store, name="keep")
    await store.append_image(c.id, "job-x", "/x.png")
    await store.append_image(keep.id, "job-k", "/k.png")
    assert await store.delete_character(c.id) is True
    assert await store.delete_character(c.id) is False
    with pytest.raises(CharacterNotFoundError):
        await store.get_character(c.id)
    assert await store.image_for_job("job-x") is None
    assert await store.image_for_job("job-k") == "/k.png"
    # The job id is free again once its character is gone.
    assert await store.append_image(keep.id, "job-x", "/x2.png") is True


async def test_poses_seeded_once_and_never_overwritten(database: TestDatabase) -> None:
    first = await open_store(database.url)
    await first.close()
    await database.fetch("UPDATE poses SET name = ? WHERE id = ?", "Edited", POSE)
    second = await open_store(database.url)
    try:
        poses = await second.list_poses()
        assert sorted(p.id for p in poses) == sorted(p.id for p in DEFAULT_POSES)
        assert (await second.get_pose(POSE)).name == "Edited"
        other = DEFAULT_POSES[1]
        assert await second.get_pose(other.id) == other
    finally:
        await second.close()


async def test_reopening_keeps_data_and_schema(database: TestDatabase) -> None:
    first = await open_store(database.url)
    c = await make(first)
    await first.append_image(c.id, "job-1", "/1.png")
    await first.close()
    second = await open_store(database.url)
    try:
        got = await second.get_character(c.id)
        assert got.display_image_urls == ["/1.png"]
        assert got.created_at == c.created_at
    finally:
        await second.close()
    assert await database.fetch("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]


async def test_newer_schema_is_refused(database: TestDatabase) -> None:
    await (await open_store(database.url)).close()
    await database.fetch("UPDATE schema_version SET version = ?", SCHEMA_VERSION + 1)
    with pytest.raises(StoreError, match="newer"):
        await open_store(database.url)


async def test_ping_and_idempotent_close(store: CharacterStore) -> None:
    await store.ping()
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get_character("0" * 24)


_VALID: dict[str, Any] = {"user_id": "u1", "name": "Ada", "pose_id": POSE}


@pytest.mark.parametrize(
    "change",
    [
        {"user_id": ""},
        {"user_id": "has space"},
        {"user_id": "line\n"},
        {"user_id": "x" * 65},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 121},
        {"name": "nul\x00"},
        {"description": "x" * 2001},
        {"personality": ["not", "an", "object"]},
        {"personality": {"blob": "x" * 9000}},
        {"pose_id": ""},
        {"surprise": 1},
    ],
)
def test_invalid_new_character_is_refused(change: dict[str, Any]) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({**_VALID, **change}, NewCharacter)


def test_valid_new_character_at_the_limits() -> None:
    limits = {"user_id": "A-z_0.9:" + "x" * 56, "name": "é" * 120, "description": "d" * 2000,
              "personality": {"blob": "x" * 8000}}  # fmt: skip
    new = msgspec.convert({**_VALID, **limits}, NewCharacter)
    assert (new.user_id, new.name) == (limits["user_id"], limits["name"])


async def test_store_validates_a_directly_built_character(store: CharacterStore) -> None:
    with pytest.raises(msgspec.ValidationError):
        await store.create_character(NewCharacter("has space", "Ada", POSE))
    assert await store.count_characters("has space") == 0


@pytest.mark.parametrize(
    "url",
    ["mysql://u@h/db", "nonsense", "sqlite://host/file.db", "sqlite:///",
     "postgresql://u@127.0.0.1/db?schema=Bad-Name", "mongodb://", "mongodb://h:port/db",
     "mongodb://h/bad.name", f"mongodb://h/{'x' * 64}"],
)  # fmt: skip
async def test_bad_url_raises_settings_error_naming_database_url(url: str) -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        await open_store(url)


async def test_sqlite_creates_directories_for_relative_and_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = tmp_path / "a" / "b" / "abs.db"
    for url, path in [(DEFAULT_DATABASE_URL, tmp_path / "data" / "imagequeue.db"),
                      (f"sqlite:///{absolute}", absolute)]:  # fmt: skip
        await (await open_store(url)).close()
        assert path.is_file()
        journal = await TestDatabase("sqlite", url, sqlite_path=path).fetch("PRAGMA journal_mode")
        assert journal == [("wal",)]


async def test_sqlite_unreachable_file_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreUnavailableError):
        await open_store(f"sqlite:///{tmp_path / 'file' / 'x.db'}")


async def test_postgres_on_a_closed_port_is_unavailable() -> None:
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/test"
    with pytest.raises(StoreUnavailableError) as err:
        await open_store(url)
    assert "127.0.0.1" in str(err.value)


async def test_ping_raises_when_postgres_goes_away(postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    port = await proxy.start()
    store = await open_store(
        postgres_url.replace(parts.netloc.rpartition("@")[2], f"127.0.0.1:{port}", 1)
    )
    try:
        await store.ping()
        await proxy.cut()
        with pytest.raises(StoreUnavailableError):
            await store.ping()
    finally:
        await store.close()


async def test_postgres_schemas_are_isolated(postgres_url: str) -> None:
    async with fresh_schema(postgres_url) as a, fresh_schema(postgres_url) as b:
        store_a = await open_store(with_schema(postgres_url, a))
        store_b = await open_store(with_schema(postgres_url, b))
        try:
            await make(store_a)
            assert (await store_a.count_characters("u1"), await store_b.count_characters("u1")) == (
                1,
                0,
            )
        finally:
            await store_a.close()
            await store_b.close()
    with pytest.raises(SettingsError, match="does not exist"):
        await open_store(with_schema(postgres_url, a))


@pytest.mark.parametrize(
    ("url", "name"),
    [("mongodb://h/app", "app"), ("mongodb://h", "imagequeue"), ("mongodb://h/?w=1", "imagequeue"),
     ("mongodb://u:p%40ss@h1:27017,h2:27018/app?replicaSet=rs", "app"),
     ("mongodb+srv://u:p@cluster0.example.net/app?retryWrites=true", "app")],
)  # fmt: skip
def test_mongo_database_is_the_url_path(url: str, name: str) -> None:
    assert mongo.database_name(url) == name


async def test_mongo_store_opens_the_urls_database(monkeypatch: pytest.MonkeyPatch) -> None:
    server = MockMongoServer()
    monkeypatch.setattr(mongo, "connect", server.connect)
    for url, name in [("mongodb://mongomock.invalid/app", "app"),
                      ("mongodb://mongomock.invalid", "imagequeue")]:  # fmt: skip
        await (await open_store(url)).close()
        poses = await server.connect(url)[name]["poses"].count_documents({})
        assert poses == len(DEFAULT_POSES)


async def test_mongo_on_a_closed_port_is_unavailable_within_seconds() -> None:
    started = time.monotonic()
    await run_collecting_leaked_sockets(_closed_port_is_unavailable())
    assert time.monotonic() - started < 8  # two server selections of 2 s each


async def _closed_port_is_unavailable() -> None:
    url = f"mongodb://127.0.0.1:{closed_port()}/test"
    with pytest.raises(StoreUnavailableError) as err:
        await open_store(url)
    assert "127.0.0.1" in str(err.value)
    # ping, on a store whose server is gone, fails as fast.
    store = mongo.MongoStore(mongo.connect(url), "test", owns_client=True)
    try:
        with pytest.raises(StoreUnavailableError):
            await store.ping()
    finally:
        await store.close()


async def test_mongo_images_left_by_a_failed_sweep_are_ignored_and_replaced(
    mongo_database: MongoTestDatabase,
) -> None:
    store = await open_store(mongo_database.url)
    try:
        gone, keep = await make(store), await make(store, name="keep")
        await store.append_image(gone.id, "job-x", "/x.png")
        # delete_character failing between its two writes: the character went, its image stayed.
        async with mongo_database.raw() as raw:
            await raw["characters"].delete_one({"_id": ObjectId(gone.id)})
        assert await store.image_for_job("job-x") is None
        assert await store.append_image(keep.id, "job-x", "/x2.png") is True
        assert await store.image_for_job("job-x") == "/x2.png"
        assert (await store.get_character(keep.id)).display_image_urls == ["/x2.png"]
    finally:
        await store.close()


async def test_mongo_store_refuses_to_run_once_another_database_is_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mongo, "connect", MockMongoServer().connect)
    first = await open_store("mongodb://mongomock.invalid/first")
    second = await open_store("mongodb://mongomock.invalid/second")
    try:
        await make(second)
        with pytest.raises(StoreError, match="another MongoDB store"):
            await first.count_characters("u1")
        assert await second.count_characters("u1") == 1
    finally:
        await first.close()
        await second.close()


async def test_ping_raises_when_mongodb_goes_away(mongodb_url: str) -> None:
    parts = urlsplit(mongodb_url)
    if parts.scheme != "mongodb" or "," in parts.netloc:
        pytest.skip("the proxy stands in for one mongodb:// host, not an SRV name or a list")
    name = fresh_database_name()
    try:
        await run_collecting_leaked_sockets(_ping_fails_once_cut(mongodb_url, name))
    finally:
        await MongoTestDatabase("mongodb", with_database(mongodb_url, name), name=name).drop()


async def _ping_fails_once_cut(mongodb_url: str, name: str) -> None:
    parts = urlsplit(mongodb_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 27017)
    port = await proxy.start()
    # directConnection: a replica set member would otherwise steer the client past the proxy.
    proxied = urlunsplit(parts._replace(
        netloc=parts.netloc.replace(parts.netloc.rpartition("@")[2], f"127.0.0.1:{port}"),
        path=f"/{name}",
        query="&".join(q for q in (parts.query, "directConnection=true") if q),
    ))  # fmt: skip
    store = await open_store(proxied)
    try:
        await store.ping()
        await proxy.cut()
        with pytest.raises(StoreUnavailableError):
            await store.ping()
    finally:
        await store.close()
