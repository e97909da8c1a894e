"""The SQL adapter of the character store, one code path for SQLite and PostgreSQL.

Statements are written once with ``?`` placeholders; each driver module
(:mod:`~imagequeue_common.store.sqlite`, :mod:`~imagequeue_common.store.postgres`)
supplies a :class:`Database` that runs them (PostgreSQL's session renumbers them to
``$n``) and a :class:`Dialect` for the few words that differ.

Images live in their own table keyed by job id and are added with
``INSERT … ON CONFLICT DO NOTHING``: a job that runs twice, or two racing runs, add
exactly one image, and appends for different jobs never overwrite each other.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import msgspec

from imagequeue_common.errors import (
    CharacterNotFoundError,
    PoseNotFoundError,
    StoreError,
    StoreUnavailableError,
)
from imagequeue_common.store.batching import GroupCommit
from imagequeue_common.store.models import Character, NewCharacter, Pose, validated

Row = Sequence[Any]


class Dialect(msgspec.Struct, frozen=True):
    """What differs between the SQL databases, besides placeholders."""

    name: str
    float_type: str
    """Column type of unix timestamps: an 8-byte float on both, spelled differently."""
    lock_row: str
    """Suffix that locks the selected rows until commit; empty where a write
    transaction already excludes other writers (SQLite)."""
    migration_lock: str | None
    """Statement that serializes concurrent migrations (several processes starting)."""


class Session(Protocol):
    """Statements inside one transaction (or one autocommitted read)."""

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        """All result rows."""
        ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        """The first result row, or None."""
        ...

    async def execute(self, sql: str, *args: Any) -> None:
        """Run a statement, discarding any result."""
        ...

    async def execute_many(self, sql: str, rows: list[Sequence[Any]]) -> None:
        """Run a statement once per row of parameters, discarding any result."""
        ...


class Database(Protocol):
    """A connection (pool) to one SQL database, with driver errors already translated."""

    dialect: Dialect

    def transaction(self, *, write: bool = True) -> AbstractAsyncContextManager[Session]:
        """A session: a transaction when ``write``; else for one autocommitted statement (a
        read, or a single self-contained write).

        Driver errors leave it as ``StoreUnavailableError`` (the database is unreachable)
        or ``StoreError``; any error rolls the transaction back.
        """
        ...

    async def close(self) -> None:
        """Close every connection; idempotent."""
        ...


_CHARACTER_COLUMNS = (
    "c.id, c.user_id, c.name, c.pose_id, c.description, c.personality, c.image_job_id, "
    "c.created_at, c.updated_at"
)
_NEWEST_FIRST = "ORDER BY created_at DESC, id DESC"


def _select_characters(where: str, page: str = "") -> str:
    """Characters matching ``where`` with their image URLs, one row per image (or one
    row with a NULL URL); newest character first, images in append order.

    ``where`` and ``page`` are constant SQL of this module; values go in as parameters.
    """
    return (
        f"SELECT {_CHARACTER_COLUMNS}, i.url "  # noqa: S608 - constant fragments only
        f"FROM (SELECT * FROM characters WHERE {where} {_NEWEST_FIRST}{page}) c "
        "LEFT JOIN images i ON i.character_id = c.id "
        "ORDER BY c.created_at DESC, c.id DESC, i.seq"
    )


def _characters(rows: list[Row]) -> list[Character]:
    """Fold the joined rows of :func:`_select_characters` into characters, in row order."""
    found: dict[str, Character] = {}
    for row in rows:
        character = found.get(row[0])
        if character is None:
            character = found[row[0]] = Character(
                id=row[0],
                user_id=row[1],
                name=row[2],
                pose_id=row[3],
                description=row[4],
                personality=msgspec.json.decode(row[5], type=dict[str, Any]),
                display_image_urls=[],
                image_job_id=row[6],
                created_at=row[7],
                updated_at=row[8],
            )
        if row[9] is not None:
            character.display_image_urls.append(row[9])
    return list(found.values())


_CHARACTER_INTO = (
    "INSERT INTO characters (id, user_id, name, pose_id, description, personality, "
    "image_job_id, created_at, updated_at) "
)
ROWS_PER_INSERT = 512
"""Most characters in one multi-row INSERT: 4,608 parameters, under SQLite's 32,766 and
PostgreSQL's 65,535."""


@functools.cache
def _insert_many(n: int) -> str:
    """One INSERT of ``n`` characters."""
    return _CHARACTER_INTO + "VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * n)


_INSERT_CHARACTER_IF_POSE = (
    _CHARACTER_INTO + "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ? "  # noqa: S608 - constant fragments
    "WHERE EXISTS (SELECT 1 FROM poses WHERE id = ?) RETURNING id"
)
"""One character, only if its pose exists (the extra parameter is the pose id again)."""


def _character_row(c: Character) -> tuple[Any, ...]:
    personality = msgspec.json.encode(c.personality).decode()
    return (c.id, c.user_id, c.name, c.pose_id, c.description, personality, c.image_job_id,
            c.created_at, c.updated_at)  # fmt: skip


class SqlStore:
    """:class:`~imagequeue_common.store.base.CharacterStore` on SQLite or PostgreSQL.

    Character creations are group-committed: while one batch is being written, those that
    arrive wait and go in the next, in one transaction — on SQLite one turn of the single
    write lock (and of the driver's thread) for many concurrent requests instead of one each.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._creates = GroupCommit(self._insert_characters)

    async def create_character(self, new: NewCharacter) -> Character:
        """See :meth:`CharacterStore.create_character`."""
        new = validated(new)
        now = time.time()
        character = Character(
            id=secrets.token_hex(12),
            user_id=new.user_id,
            name=new.name,
            pose_id=new.pose_id,
            description=new.description,
            personality=new.personality,
            display_image_urls=[],
            image_job_id=new.image_job_id,
            created_at=now,
            updated_at=now,
        )
        await self._creates.submit(character)
        return character

    async def _insert_characters(self, batch: list[Character]) -> list[StoreError | None]:
        """Write the characters that arrived together: one transaction for all of them; if
        it fails on a row (its pose went away), each on its own, so each gets its answer."""
        results: list[StoreError | None] = []
        start = 0
        while start < len(batch):
            # Chunks of 512, 256, … 1 rows: few distinct statements, each prepared once.
            size = min(ROWS_PER_INSERT, 1 << ((len(batch) - start).bit_length() - 1))
            results += await self._insert_rows(batch[start : start + size])
            start += size
        return results

    async def _insert_rows(self, batch: list[Character]) -> list[StoreError | None]:
        if len(batch) > 1:
            # One multi-row INSERT, autocommitted: atomic, and one call to the driver. A
            # transaction around executemany would hold SQLite's write lock across three
            # calls (BEGIN, the rows, COMMIT), each a hop to aiosqlite's thread and back,
            # while the other API processes' writers wait in SQLite's busy handler, which
            # sleeps in steps of up to 100 ms: seen as bursts of 0.5 s latencies at 2000/s.
            rows = [value for c in batch for value in _character_row(c)]
            try:
                async with self._db.transaction(write=False) as s:
                    await s.execute(_insert_many(len(batch)), *rows)
            except StoreUnavailableError:
                raise
            except StoreError:
                pass
            else:
                return [None] * len(batch)
        results: list[StoreError | None] = []
        for character in batch:
            try:
                await self._insert_character(character)
            except StoreUnavailableError:
                raise
            except StoreError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    async def _insert_character(self, character: Character) -> None:
        # One self-contained statement (its own atomic commit): the character goes in only
        # if its pose exists, with no transaction held open across round trips.
        async with self._db.transaction(write=False) as s:
            added = await s.fetchrow(
                _INSERT_CHARACTER_IF_POSE, *_character_row(character), character.pose_id
            )
        if added is None:
            raise PoseNotFoundError(character.pose_id)

    async def get_character(self, character_id: str) -> Character:
        """See :meth:`CharacterStore.get_character`."""
        async with self._db.transaction(write=False) as s:
            rows = await s.fetch(_select_characters("id = ?"), character_id)
        if not rows:
            raise CharacterNotFoundError(character_id)
        return _characters(rows)[0]

    async def list_characters(
        self, user_id: str, *, limit: int = 20, offset: int = 0
    ) -> list[Character]:
        """See :meth:`CharacterStore.list_characters`."""
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")
        sql = _select_characters("user_id = ?", " LIMIT ? OFFSET ?")
        async with self._db.transaction(write=False) as s:
            return _characters(await s.fetch(sql, user_id, limit, offset))

    async def count_characters(self, user_id: str) -> int:
        """See :meth:`CharacterStore.count_characters`."""
        async with self._db.transaction(write=False) as s:
            row = await s.fetchrow("SELECT COUNT(*) FROM characters WHERE user_id = ?", user_id)
        return int(row[0]) if row else 0

    async def set_image_job(self, character_id: str, job_id: str | None) -> None:
        """See :meth:`CharacterStore.set_image_job`."""
        async with self._db.transaction() as s:
            updated = await s.fetchrow(
                "UPDATE characters SET image_job_id = ?, updated_at = ? WHERE id = ? RETURNING id",
                job_id, time.time(), character_id,
            )  # fmt: skip
        if updated is None:
            raise CharacterNotFoundError(character_id)

    async def append_image(self, character_id: str, job_id: str, url: str) -> bool:
        """See :meth:`CharacterStore.append_image`."""
        now = time.time()
        async with self._db.transaction() as s:
            # Locking the character serializes appends to it (so the next ``seq`` is not
            # taken twice) and against its deletion.
            lock_row = self._db.dialect.lock_row
            lock = f"SELECT id FROM characters WHERE id = ?{lock_row}"  # noqa: S608 - constant
            if await s.fetchrow(lock, character_id) is None:
                raise CharacterNotFoundError(character_id)
            added = await s.fetchrow(
                "INSERT INTO images (job_id, character_id, seq, url, created_at) VALUES (?, ?, "
                "(SELECT COALESCE(MAX(seq), 0) + 1 FROM images WHERE character_id = ?), ?, ?) "
                "ON CONFLICT (job_id) DO NOTHING RETURNING job_id",
                job_id, character_id, character_id, url, now,
            )  # fmt: skip
            if added is not None:
                await s.execute(
                    "UPDATE characters SET updated_at = ? WHERE id = ?", now, character_id
                )
        return added is not None

    async def image_for_job(self, job_id: str) -> str | None:
        """See :meth:`CharacterStore.image_for_job`."""
        async with self._db.transaction(write=False) as s:
            row = await s.fetchrow("SELECT url FROM images WHERE job_id = ?", job_id)
        return None if row is None else str(row[0])

    async def delete_character(self, character_id: str) -> bool:
        """See :meth:`CharacterStore.delete_character`; images go by ``ON DELETE CASCADE``."""
        async with self._db.transaction() as s:
            row = await s.fetchrow("DELETE FROM characters WHERE id = ? RETURNING id", character_id)
        return row is not None

    async def list_poses(self) -> list[Pose]:
        """See :meth:`CharacterStore.list_poses`."""
        async with self._db.transaction(write=False) as s:
            rows = await s.fetch("SELECT id, name, prompt FROM poses ORDER BY id")
        return [Pose(row[0], row[1], row[2]) for row in rows]

    async def get_pose(self, pose_id: str) -> Pose:
        """See :meth:`CharacterStore.get_pose`."""
        async with self._db.transaction(write=False) as s:
            row = await s.fetchrow("SELECT id, name, prompt FROM poses WHERE id = ?", pose_id)
        if row is None:
            raise PoseNotFoundError(pose_id)
        return Pose(row[0], row[1], row[2])

    async def ping(self) -> None:
        """See :meth:`CharacterStore.ping`."""
        async with self._db.transaction(write=False) as s:
            await s.fetchrow("SELECT 1")

    async def close(self) -> None:
        """See :meth:`CharacterStore.close`."""
        await self._db.close()
