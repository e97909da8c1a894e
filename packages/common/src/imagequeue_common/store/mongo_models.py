"""The MongoDB adapter's documents (Beanie models), one collection each, and
:func:`migrate`, which brings a database to this layout at open.

- ``characters``: one document per character, ``_id`` an ObjectId (its hex is the
  character id). ``image_seq`` is the last image sequence number handed out.
- ``images``: one document per image, ``_id`` = the job id that made it. The unique
  ``_id`` is what makes an append idempotent; ``(character_id, seq)`` orders a
  character's images and is unique, as in the SQL ``images`` table.
- ``poses``: ``_id`` = the stable pose id of :data:`~imagequeue_common.store.poses.DEFAULT_POSES`.
- ``schema_version``: one document, ``{_id: "schema", version: n}``.

Beanie binds these classes to one database per process (``init_beanie`` rebinds them);
:mod:`~imagequeue_common.store.mongo` refuses to run on a stale binding.

To change the layout, bump :data:`SCHEMA_VERSION` and make :func:`migrate` bring an
older database forward; indexes declared here are created (never dropped) at every open.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
from beanie import Document, PydanticObjectId, init_beanie
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase

from imagequeue_common.errors import StoreError
from imagequeue_common.store.models import Character, NewCharacter, Pose
from imagequeue_common.store.poses import DEFAULT_POSES

SCHEMA_VERSION = 1
"""This code's document layout. Opening raises the marker to it (never lowers it) once
the indexes and poses are in place; a database marked newer is refused."""
SCHEMA_DOCUMENT_ID = "schema"


class CharacterDocument(Document):
    """A character. ``personality_json`` is the personality object as JSON text, like the
    SQL adapter stores it: BSON cannot hold every JSON object msgspec accepts (a NUL in
    a key, an integer beyond 64 bits), and nothing ever queries inside it."""

    id: PydanticObjectId  # required here; Beanie's is optional
    user_id: str
    name: str
    pose_id: str
    description: str
    personality_json: str
    image_job_id: str | None
    created_at: float
    updated_at: float
    image_seq: int = 0

    @classmethod
    def of(cls, new: NewCharacter, *, now: float) -> CharacterDocument:
        """A new character's document, with a fresh id; ``new`` must be validated."""
        return cls(
            id=PydanticObjectId(),
            user_id=new.user_id,
            name=new.name,
            pose_id=new.pose_id,
            description=new.description,
            personality_json=msgspec.json.encode(new.personality).decode(),
            image_job_id=new.image_job_id,
            created_at=now,
            updated_at=now,
        )

    def character(self, display_image_urls: list[str]) -> Character:
        """The stored character, with these image URLs."""
        return Character(
            id=str(self.id),
            user_id=self.user_id,
            name=self.name,
            pose_id=self.pose_id,
            description=self.description,
            personality=msgspec.json.decode(self.personality_json, type=dict[str, Any]),
            display_image_urls=display_image_urls,
            image_job_id=self.image_job_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    class Settings:
        name = "characters"
        indexes: ClassVar[list[IndexModel]] = [
            # list_characters: one user's, newest first, ties by id descending.
            IndexModel(
                [("user_id", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)],
                name="characters_by_user",
            ),
        ]


class ImageDocument(Document):
    """An image a job added to a character; ``id`` is the job id."""

    id: str  # type: ignore[assignment]  # the job id, not an ObjectId
    character_id: PydanticObjectId
    seq: int
    url: str
    created_at: float

    class Settings:
        name = "images"
        indexes: ClassVar[list[IndexModel]] = [
            IndexModel(
                [("character_id", ASCENDING), ("seq", ASCENDING)],
                unique=True,
                name="images_by_character",
            ),
        ]


class PoseDocument(Document):
    """A pose; ``id`` is its stable pose id."""

    id: str  # type: ignore[assignment]  # the pose id, not an ObjectId
    name: str
    prompt: str

    def pose(self) -> Pose:
        """The stored pose."""
        return Pose(self.id, self.name, self.prompt)

    class Settings:
        name = "poses"


class SchemaDocument(Document):
    """The schema marker: how far this database has been migrated."""

    id: str = SCHEMA_DOCUMENT_ID  # type: ignore[assignment]  # one fixed document
    version: int

    class Settings:
        name = "schema_version"


async def migrate(db: AsyncDatabase[Any]) -> None:
    """Bind the documents to ``db``, create their indexes, seed the default poses and
    mark the database :data:`SCHEMA_VERSION`. Every step may be run again, by this
    process or a racing one.

    Raises ``StoreError`` when the database is newer than this code knows. Driver
    errors are the caller's to translate.
    """
    # The marker is read before any index is created: a newer layout may have replaced them.
    await init_beanie(database=db, document_models=[SchemaDocument])
    marker = await SchemaDocument.get(SCHEMA_DOCUMENT_ID)
    if marker is not None and marker.version > SCHEMA_VERSION:
        raise StoreError(
            f"database schema version {marker.version} is newer than this code's {SCHEMA_VERSION}"
        )
    await init_beanie(database=db, document_models=[CharacterDocument, ImageDocument, PoseDocument])
    # $setOnInsert: an existing pose (perhaps edited by an operator) is left as it is.
    for pose in DEFAULT_POSES:
        await PoseDocument.find_one(PoseDocument.id == pose.id).update(
            {"$setOnInsert": {"name": pose.name, "prompt": pose.prompt}}, upsert=True
        )
    # Last, and $max: an interrupted open is redone next time, and racing opens agree.
    await SchemaDocument.find_one(SchemaDocument.id == SCHEMA_DOCUMENT_ID).update(
        {"$max": {"version": SCHEMA_VERSION}}, upsert=True
    )
