"""The MongoDB adapter of the character store, on Beanie over pymongo's asyncio client.

MongoDB transactions need a replica set, so nothing here relies on one: every write is a
single-document atomic operation, ordered so that a failure between two of them leaves
nothing a reader can see.

- ``create_character`` checks the pose, then inserts one document.
- ``append_image`` first increments the character's ``image_seq`` (this proves that the
  character exists and hands out a sequence number no other append gets), then inserts
  the image with ``_id`` = job id. A failure in between leaves a gap in the sequence,
  which only orders images, and a newer ``updated_at``; no image. The unique ``_id``
  makes the insert idempotent: of two racing runs of one job, exactly one inserts.
- ``delete_character`` deletes the character, then sweeps its images. Images left behind
  (the sweep failed, or an append raced the delete) are orphans: no read shows an image
  whose character is gone, and appending that job again replaces the orphan.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from beanie import SortDirection, UpdateResponse
from beanie.operators import In
from bson import ObjectId
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConfigurationError, ConnectionFailure, DuplicateKeyError, PyMongoError

from imagequeue_common.errors import (
    CharacterNotFoundError,
    PoseNotFoundError,
    SettingsError,
    StoreError,
    StoreUnavailableError,
)
from imagequeue_common.store.models import Character, NewCharacter, Pose, validated
from imagequeue_common.store.mongo_models import (
    CharacterDocument,
    ImageDocument,
    PoseDocument,
    migrate,
)

DEFAULT_DATABASE = "imagequeue"
# Short, so that a dead server fails `ping` (and everything else) within seconds; a
# server that stops answering mid-operation fails it after the socket timeout. A value
# given in the URL's query wins over these. Not timeoutMS: when set, it replaces
# serverSelectionTimeoutMS as the bound on finding a server.
CLIENT_DEFAULTS: dict[str, Any] = {
    "serverSelectionTimeoutMS": 2000,
    "connectTimeoutMS": 2000,
    "socketTimeoutMS": 10000,
}
# Characters MongoDB does not allow in a database name (besides an empty or long one).
_BAD_NAME_CHARACTERS = frozenset('/\\. "$*<>:|?\x00')
_MAX_NAME_BYTES = 63
_CHARACTER_ID = re.compile(r"[0-9a-f]{24}")  # as SqlStore makes them; ObjectId takes upper case too
_NEWEST_FIRST = [("created_at", SortDirection.DESCENDING), ("_id", SortDirection.DESCENDING)]


def database_name(url: str) -> str:
    """The database named by the path of a ``mongodb://`` or ``mongodb+srv://`` URL, or
    ``imagequeue``. Raises ``SettingsError`` for a name MongoDB would refuse."""
    try:
        path = urlsplit(url).path
    except ValueError as exc:
        raise SettingsError(f"DATABASE_URL is not a valid URL: {exc}") from None
    name = unquote(path.lstrip("/")) or DEFAULT_DATABASE
    if len(name.encode()) > _MAX_NAME_BYTES or _BAD_NAME_CHARACTERS.intersection(name):
        raise SettingsError(
            f"DATABASE_URL names MongoDB database {name!r}: use at most {_MAX_NAME_BYTES} "
            'bytes and none of / \\ . space " $ * < > : | ?'
        )
    return name


def connect(url: str) -> AsyncMongoClient[dict[str, Any]]:
    """A client for ``url`` with :data:`CLIENT_DEFAULTS`; it connects on first use.

    Raises ``SettingsError`` with pymongo's reason (not the URL, which may hold a
    password) when pymongo refuses the URL.
    """
    try:
        given = {key.lower() for key, _ in parse_qsl(urlsplit(url).query)}
        options = {k: v for k, v in CLIENT_DEFAULTS.items() if k.lower() not in given}
        return AsyncMongoClient(url, appname="imagequeue", **options)
    except (ConfigurationError, ValueError, TypeError) as exc:
        raise SettingsError(f"DATABASE_URL is not a usable MongoDB URL: {exc}") from None


async def open_mongo_url(url: str) -> MongoStore:
    """:func:`open_mongo_store` on a new client for ``url`` (the store closes it)."""
    name = database_name(url)
    label = f"MongoDB {urlsplit(url).netloc.rpartition('@')[2]}/{name}"
    return await open_mongo_store(connect(url), name, owns_client=True, label=label)


async def open_mongo_store(
    client: AsyncMongoClient[Any],
    database: str,
    *,
    owns_client: bool = False,
    label: str | None = None,
) -> MongoStore:
    """Open the store in ``client[database]``: check the schema marker, create the
    indexes, seed the poses, raise the marker. The store closes ``client`` (at ``close``,
    or when opening fails) only if ``owns_client``.

    Raises ``StoreUnavailableError`` when the server does not answer and ``StoreError``
    when the database's schema is newer than this code's.
    """
    store = MongoStore(client, database, owns_client=owns_client, label=label)
    try:
        with store._calls(bound=False):
            await migrate(store.database)
    except BaseException:
        await store.close()
        raise
    return store


def _object_id(character_id: str) -> ObjectId | None:
    """The ObjectId of a character id, or None if it cannot be one (24 lowercase hex)."""
    return ObjectId(character_id) if _CHARACTER_ID.fullmatch(character_id) else None


def _translate(exc: PyMongoError, label: str) -> StoreError:
    if isinstance(exc, ConnectionFailure) or exc.timeout:
        return StoreUnavailableError(f"{label} unavailable: {exc}")
    return StoreError(f"{label} error: {exc}")


class MongoStore:
    """:class:`~imagequeue_common.store.base.CharacterStore` on MongoDB."""

    def __init__(
        self,
        client: AsyncMongoClient[Any],
        database: str,
        *,
        owns_client: bool,
        label: str | None = None,
    ) -> None:
        self._client = client
        self.database: AsyncDatabase[Any] = client[database]
        self._owns_client = owns_client
        self._label = label or f"MongoDB database {database!r}"
        self._closed = False

    @contextmanager
    def _calls(self, *, bound: bool = True) -> Iterator[None]:
        """Driver errors leave as ``StoreUnavailableError`` or ``StoreError``.

        ``bound``: Beanie binds the document classes to the database of the store
        opened last in this process; a store whose binding was taken over refuses to
        run rather than read and write another database.
        """
        if self._closed:
            raise StoreError("the store is closed")
        if bound and CharacterDocument.get_settings().pymongo_db is not self.database:
            raise StoreError(
                f"{self._label}: another MongoDB store was opened in this process since; "
                "Beanie serves one database per process"
            )
        try:
            yield
        except PyMongoError as exc:
            raise _translate(exc, self._label) from exc

    async def create_character(self, new: NewCharacter) -> Character:
        """See :meth:`CharacterStore.create_character`."""
        doc = CharacterDocument.of(validated(new), now=time.time())
        with self._calls():
            if await PoseDocument.get(doc.pose_id) is None:
                raise PoseNotFoundError(doc.pose_id)
            await doc.insert()
        return doc.character([])

    async def get_character(self, character_id: str) -> Character:
        """See :meth:`CharacterStore.get_character`."""
        oid = _object_id(character_id)
        with self._calls():
            doc = None if oid is None else await CharacterDocument.get(oid)
            if doc is None:
                raise CharacterNotFoundError(character_id)
            return (await self._with_images([doc]))[0]

    async def list_characters(
        self, user_id: str, *, limit: int = 20, offset: int = 0
    ) -> list[Character]:
        """See :meth:`CharacterStore.list_characters`."""
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be >= 0, got {limit} and {offset}")
        with self._calls():
            if limit == 0:  # MongoDB reads limit 0 as "no limit"
                return []
            docs = (
                await CharacterDocument.find(CharacterDocument.user_id == user_id)
                .sort(_NEWEST_FIRST)
                .skip(offset)
                .limit(limit)
                .to_list()
            )
            return await self._with_images(docs)

    async def _with_images(self, docs: list[CharacterDocument]) -> list[Character]:
        """The characters of ``docs``, in order, each with its image URLs in append order."""
        urls: dict[ObjectId, list[str]] = {doc.id: [] for doc in docs}
        if urls:
            images = ImageDocument.find(In(ImageDocument.character_id, list(urls)))
            for image in await images.sort(("seq", SortDirection.ASCENDING)).to_list():
                urls[image.character_id].append(image.url)
        return [doc.character(urls[doc.id]) for doc in docs]

    async def count_characters(self, user_id: str) -> int:
        """See :meth:`CharacterStore.count_characters`."""
        with self._calls():
            return await CharacterDocument.find(CharacterDocument.user_id == user_id).count()

    async def set_image_job(self, character_id: str, job_id: str | None) -> None:
        """See :meth:`CharacterStore.set_image_job`."""
        oid = _object_id(character_id)
        with self._calls():
            found = oid is not None and await self._update_character(
                oid, {"$set": {"image_job_id": job_id, "updated_at": time.time()}}
            )
        if not found:
            raise CharacterNotFoundError(character_id)

    async def _update_character(
        self, oid: ObjectId, change: Mapping[str, Any]
    ) -> CharacterDocument | None:
        """The character after ``change`` (one update document), or None if it is gone."""
        query = CharacterDocument.find_one(CharacterDocument.id == oid)
        updated = await query.update(change, response_type=UpdateResponse.NEW_DOCUMENT)
        # Beanie's annotation does not narrow by response_type: NEW_DOCUMENT gives the
        # document, or None.
        return updated if isinstance(updated, CharacterDocument) else None

    async def append_image(self, character_id: str, job_id: str, url: str) -> bool:
        """See :meth:`CharacterStore.append_image` and the write order in the module doc."""
        oid = _object_id(character_id)
        with self._calls():
            if oid is None:
                raise CharacterNotFoundError(character_id)
            if await self._image_of_live_character(job_id) is not None:
                if await CharacterDocument.get(oid) is None:  # as SQL: a gone character wins
                    raise CharacterNotFoundError(character_id)
                return False
            updated = await self._update_character(
                oid, {"$inc": {"image_seq": 1}, "$set": {"updated_at": time.time()}}
            )
            if updated is None:
                raise CharacterNotFoundError(character_id)
            image = ImageDocument(
                id=job_id, character_id=oid, seq=updated.image_seq, url=url,
                created_at=updated.updated_at,
            )  # fmt: skip
            try:
                await image.insert()
            except DuplicateKeyError:
                # A racing run of this job inserted first. The increment stays, as after a
                # failure: a skipped seq, and an updated_at the winner moves anyway.
                return False
            if await CharacterDocument.get(oid) is None:
                # Deleted since the increment: its sweep may have run before this insert.
                await ImageDocument.find_one(
                    ImageDocument.id == job_id, ImageDocument.character_id == oid
                ).delete()
                raise CharacterNotFoundError(character_id)
        return True

    async def _image_of_live_character(self, job_id: str) -> ImageDocument | None:
        """The job's image if its character still exists; an orphan is deleted."""
        image = await ImageDocument.get(job_id)
        if image is None or await CharacterDocument.get(image.character_id) is not None:
            return image
        await ImageDocument.find_one(
            ImageDocument.id == job_id, ImageDocument.character_id == image.character_id
        ).delete()
        return None

    async def image_for_job(self, job_id: str) -> str | None:
        """See :meth:`CharacterStore.image_for_job`."""
        with self._calls():
            image = await ImageDocument.get(job_id)
            if image is None or await CharacterDocument.get(image.character_id) is None:
                return None
        return image.url

    async def delete_character(self, character_id: str) -> bool:
        """See :meth:`CharacterStore.delete_character` and the write order in the module doc."""
        oid = _object_id(character_id)
        with self._calls():
            if oid is None:
                return False
            deleted = await CharacterDocument.find_one(CharacterDocument.id == oid).delete()
            # Swept even when the character was already gone: a retry finishes a failed sweep.
            await ImageDocument.find(ImageDocument.character_id == oid).delete()
        return deleted is not None and deleted.deleted_count == 1

    async def list_poses(self) -> list[Pose]:
        """See :meth:`CharacterStore.list_poses`."""
        with self._calls():
            docs = await PoseDocument.find_all().sort(("_id", SortDirection.ASCENDING)).to_list()
        return [doc.pose() for doc in docs]

    async def get_pose(self, pose_id: str) -> Pose:
        """See :meth:`CharacterStore.get_pose`."""
        with self._calls():
            doc = await PoseDocument.get(pose_id)
        if doc is None:
            raise PoseNotFoundError(pose_id)
        return doc.pose()

    async def ping(self) -> None:
        """See :meth:`CharacterStore.ping`."""
        with self._calls(bound=False):
            await self.database.command("ping")

    async def close(self) -> None:
        """See :meth:`CharacterStore.close`; closes the client only if the store owns it."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.close()
