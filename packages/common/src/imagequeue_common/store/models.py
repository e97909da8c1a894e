"""The store's records: characters and poses, as frozen msgspec structs.

:class:`NewCharacter` is what callers hand in. Its constraints are msgspec ``Meta``
annotations, so they are enforced whenever it is decoded (``msgspec.convert``,
``msgspec.json.decode``, a Litestar request body); the store decodes it once more before
writing, so a struct built directly in Python cannot slip past them either.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

MAX_PERSONALITY_BYTES = 8 * 1024

UserId = Annotated[
    str,
    # \Z, not $: Python's $ also matches before a trailing newline.
    msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+\Z"),
]
CharacterName = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]
Description = Annotated[str, msgspec.Meta(max_length=2000)]
PoseId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
JobId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class Pose(msgspec.Struct, frozen=True):
    """A pose a character can be drawn in; ``prompt`` is its fragment of the image prompt."""

    id: str
    name: str
    prompt: str


class NewCharacter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A character to create. ``name`` is stripped and must not end up empty."""

    user_id: UserId
    name: CharacterName
    pose_id: PoseId
    description: Description = ""
    personality: dict[str, Any] = {}
    image_job_id: JobId | None = None

    def __post_init__(self) -> None:
        # msgspec reports a ValueError raised here as a ValidationError when decoding.
        name = self.name.strip()
        if not name:
            raise ValueError("name must not be blank")
        msgspec.structs.force_setattr(self, "name", name)
        if "\x00" in name or "\x00" in self.description:
            # PostgreSQL text cannot hold NUL; refuse it everywhere so every adapter agrees.
            raise ValueError("name and description must not contain NUL characters")
        if len(msgspec.json.encode(self.personality)) > MAX_PERSONALITY_BYTES:
            raise ValueError(f"personality must be at most {MAX_PERSONALITY_BYTES} bytes as JSON")


class Character(msgspec.Struct, frozen=True, kw_only=True):
    """A stored character. ``display_image_urls`` keep the order the images were added in."""

    id: str
    """24 lowercase hex digits, like a MongoDB ObjectId."""
    user_id: str
    name: str
    pose_id: str
    description: str
    personality: dict[str, Any]
    display_image_urls: list[str]
    image_job_id: str | None
    created_at: float
    """Unix seconds."""
    updated_at: float


def validated(new: NewCharacter) -> NewCharacter:
    """``new`` decoded again, so the ``Meta`` constraints hold even if it was built directly.

    Raises ``msgspec.ValidationError`` (a ``ValueError``) when a value is out of bounds.
    """
    return msgspec.json.decode(msgspec.json.encode(new), type=NewCharacter)
