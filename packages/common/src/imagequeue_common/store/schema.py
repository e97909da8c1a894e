"""The SQL schema, created and migrated at open.

``schema_version`` holds one row: the number of migrations applied. Opening runs, in one
transaction, whatever migrations are missing, then seeds the default poses (skipping ids
that exist), so opening an up-to-date database changes nothing. To change the schema,
append a migration; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

from imagequeue_common.errors import StoreError
from imagequeue_common.store.poses import DEFAULT_POSES
from imagequeue_common.store.sql import Database, Dialect, Session


def _v1_tables(d: Dialect) -> list[str]:
    return [
        "CREATE TABLE poses (id TEXT PRIMARY KEY, name TEXT NOT NULL, prompt TEXT NOT NULL)",
        "CREATE TABLE characters ("
        " id TEXT PRIMARY KEY,"
        " user_id TEXT NOT NULL,"
        " name TEXT NOT NULL,"
        " pose_id TEXT NOT NULL REFERENCES poses (id),"
        " description TEXT NOT NULL,"
        " personality TEXT NOT NULL,"  # a JSON object, as text on every database
        " image_job_id TEXT,"
        f" created_at {d.float_type} NOT NULL,"
        f" updated_at {d.float_type} NOT NULL)",
        "CREATE INDEX characters_by_user ON characters (user_id, created_at DESC, id DESC)",
        # One row per job: the primary key is what makes an image's append idempotent.
        "CREATE TABLE images ("
        " job_id TEXT PRIMARY KEY,"
        " character_id TEXT NOT NULL REFERENCES characters (id) ON DELETE CASCADE,"
        " seq INTEGER NOT NULL,"  # append order within the character
        " url TEXT NOT NULL,"
        f" created_at {d.float_type} NOT NULL,"
        " UNIQUE (character_id, seq))",
    ]


MIGRATIONS: tuple[Callable[[Dialect], list[str]], ...] = (_v1_tables,)
SCHEMA_VERSION = len(MIGRATIONS)


async def migrate(db: Database) -> None:
    """Bring the database to :data:`SCHEMA_VERSION` and seed the default poses.

    Raises ``StoreError`` when the database is newer than this code knows.
    """
    async with db.transaction() as s:
        if db.dialect.migration_lock:
            await s.execute(db.dialect.migration_lock)
        current = await _current_version(s)
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {current} is newer than this code's {SCHEMA_VERSION}"
            )
        for migration in MIGRATIONS[current:]:
            for statement in migration(db.dialect):
                await s.execute(statement)
        if current < SCHEMA_VERSION:
            await s.execute("DELETE FROM schema_version")
            await s.execute("INSERT INTO schema_version (version) VALUES (?)", SCHEMA_VERSION)
        for pose in DEFAULT_POSES:
            await s.execute(
                "INSERT INTO poses (id, name, prompt) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                pose.id, pose.name, pose.prompt,
            )  # fmt: skip


async def _current_version(s: Session) -> int:
    await s.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = await s.fetchrow("SELECT MAX(version) FROM schema_version")
    return 0 if row is None or row[0] is None else int(row[0])
