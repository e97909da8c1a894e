"""The character store contract that every adapter (SQLite and PostgreSQL, MongoDB) implements.

It speaks only of characters, poses and image jobs: no tables, rows or transactions, so a
document database can implement it as naturally as a relational one.
"""

from __future__ import annotations

from typing import Protocol

from imagequeue_common.store.models import Character, NewCharacter, Pose


class CharacterStore(Protocol):
    """Characters and poses. Every method may raise ``StoreUnavailableError``."""

    async def create_character(self, new: NewCharacter) -> Character:
        """Store a new character with a fresh id.

        Raises ``PoseNotFoundError`` (nothing written) for an unknown pose and
        ``msgspec.ValidationError`` for out-of-bounds values.
        """
        ...

    async def get_character(self, character_id: str) -> Character:
        """The character, or ``CharacterNotFoundError``."""
        ...

    async def list_characters(
        self, user_id: str, *, limit: int = 20, offset: int = 0
    ) -> list[Character]:
        """One page of the user's characters, newest first (ties by id, descending)."""
        ...

    async def count_characters(self, user_id: str) -> int:
        """How many characters the user has."""
        ...

    async def set_image_job(self, character_id: str, job_id: str | None) -> None:
        """Record the job making the character's image (None clears it)."""
        ...

    async def append_image(self, character_id: str, job_id: str, url: str) -> bool:
        """Add ``url`` to the character's images once per ``job_id``.

        True when added; False when this job already added an image (nothing changes), so
        a job that runs twice, or two racing runs, leave exactly one image. Raises
        ``CharacterNotFoundError`` when the character is gone.
        """
        ...

    async def image_for_job(self, job_id: str) -> str | None:
        """The URL the job added, or None."""
        ...

    async def delete_character(self, character_id: str) -> bool:
        """Delete the character and its images; True if it existed."""
        ...

    async def list_poses(self) -> list[Pose]:
        """Every pose, by id."""
        ...

    async def get_pose(self, pose_id: str) -> Pose:
        """The pose, or ``PoseNotFoundError``."""
        ...

    async def ping(self) -> None:
        """A cheap round trip; raises ``StoreUnavailableError`` when the database is down."""
        ...

    async def close(self) -> None:
        """Release connections; calling it again does nothing."""
        ...
