"""``open_store``: the adapter named by ``DATABASE_URL``, connected and migrated."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from imagequeue_common.errors import SettingsError
from imagequeue_common.settings import default_database_url
from imagequeue_common.store.base import CharacterStore
from imagequeue_common.store.postgres import PostgresDatabase
from imagequeue_common.store.schema import migrate
from imagequeue_common.store.sql import Database, SqlStore
from imagequeue_common.store.sqlite import SqliteDatabase

DEFAULT_DATABASE_URL = default_database_url()
"""Settings' default (one definition: ``settings.default_database_url``)."""
# Lower case only: PostgreSQL folds an unquoted search_path entry to lower case.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


async def open_store(database_url: str) -> CharacterStore:
    """Connect to ``database_url``, create or migrate its schema, seed the poses.

    - ``sqlite:///relative/file.db`` or ``sqlite:////absolute/file.db`` (the parent
      directory is created);
    - ``postgresql://user:pass@host:port/db`` (or ``postgres://``); an optional
      ``?schema=<name>`` query parameter puts the store's tables in that existing schema
      (lower-case letters, digits, ``_``) and confines it there;
    - ``mongodb://host/db`` (or ``mongodb+srv://``): MongoDB through Beanie; the path
      names the database (default ``imagequeue``), the query takes pymongo's options.

    Raises ``SettingsError`` (naming ``DATABASE_URL``) for a URL it cannot use, and
    ``StoreUnavailableError`` when the database does not answer.
    """
    scheme = database_url.strip().partition("://")[0].lower()
    if scheme in ("mongodb", "mongodb+srv"):
        # Imported here: Beanie and pymongo take half a second to import, for nothing on SQL.
        from imagequeue_common.store.mongo import open_mongo_url  # noqa: PLC0415

        return await open_mongo_url(database_url.strip())
    db = await _open_database(database_url)
    try:
        await migrate(db)
    except BaseException:
        await db.close()
        raise
    return SqlStore(db)


async def _open_database(url: str) -> Database:
    scheme, sep, rest = url.strip().partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite":
        return await SqliteDatabase.open(_sqlite_path(rest))
    if sep and scheme in ("postgresql", "postgres"):
        dsn, schema, label = _postgres_parts(url.strip())
        return await PostgresDatabase.open(dsn, schema=schema, label=label)
    # Only the scheme is echoed: the rest of the URL may hold a password.
    raise SettingsError(
        "DATABASE_URL must start with sqlite:///, postgresql://, postgres://, mongodb:// "
        "or mongodb+srv://, "
        f"got scheme {scheme!r}"
    )


def _sqlite_path(rest: str) -> str:
    """The file path of ``sqlite://<rest>``: the host part must be empty."""
    if not rest.startswith("/") or len(rest) < 2:
        raise SettingsError(
            "DATABASE_URL for SQLite must be sqlite:///relative/file.db "
            "or sqlite:////absolute/file.db"
        )
    return unquote(rest[1:])


def _postgres_parts(url: str) -> tuple[str, str | None, str]:
    """(asyncpg DSN without ``schema``, the schema, host/db label without credentials)."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise SettingsError(f"DATABASE_URL is not a valid URL: {exc}") from None
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    if len(schemas) > 1 or (schemas and not _SCHEMA_NAME.fullmatch(schemas[0])):
        raise SettingsError(
            "DATABASE_URL schema must be one name of lower-case letters, digits and '_'"
        )
    dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "schema"])))
    label = parts.netloc.rpartition("@")[2] + parts.path
    return dsn, (schemas[0] if schemas else None), label
