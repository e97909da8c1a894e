"""Task contracts shared by the api and the worker: names, priorities, states, payloads.

The api sends tasks by name; it never imports worker code. Payloads are frozen msgspec
structs that refuse unknown fields, encoded as JSON (never pickle).
"""

from __future__ import annotations

import enum
from typing import Annotated

import msgspec

from imagequeue_common.settings import Quality

GENERATE_IMAGE_TASK = "imagequeue.generate_image"
CLEAN_TASK = "imagequeue.clean"
NOOP_TASK = "imagequeue.noop"
DELIVER_WEBHOOK_TASK = "imagequeue.deliver_webhook"


class Priority(enum.StrEnum):
    """Job priority: strict order between them, or weighted turns (``PRIORITY_POLICY``);
    fair share between users inside one (``queue.fairness``)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @classmethod
    def parse(cls, value: object) -> Priority:
        """Parse a label value; raises ``ValueError`` naming the allowed values."""
        if isinstance(value, Priority):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            allowed = ", ".join(p.value for p in cls)
            raise ValueError(f"unknown priority {value!r}: use one of {allowed}") from None


class JobState(enum.StrEnum):
    """A job is in exactly one of these, always."""

    WAITING = "waiting"
    ACTIVE = "active"
    DELAYED = "delayed"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    """Not started before its deadline to start (``start_deadline``): it never ran."""

    @property
    def is_final(self) -> bool:
        """Completed, failed (dead-lettered), cancelled or expired: the job will not run
        again unless someone sends it back."""
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED)


Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=120)]


class CharacterRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a job needs to know of a character at enqueue time."""

    id: Id
    name: Name


class PoseRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a job needs to know of a pose at enqueue time."""

    id: Id
    name: Name


class GenerateImagePayload(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``generate_image`` task's only argument."""

    character_id: Id
    character_name: Name
    pose_id: Id
    pose_name: Name
    user_id: Id
    quality: Quality = "hq"
    """``hq``, ``standard`` or ``draft``; each backend maps it (steps, its own quality)."""


class GenerateImageResult(msgspec.Struct, frozen=True):
    """What a ``generate_image`` job returns (its stored result)."""

    character_id: str
    url: str
    seconds: float
    """How long the upstream took (0 when an image recorded earlier was reused)."""
    reused: bool = False

    @classmethod
    def from_stored(cls, result: str | None) -> GenerateImageResult | None:
        """A completed job's stored result, or None when it is not one of these."""
        if not result:
            return None
        try:
            return msgspec.json.decode(result, type=cls)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None


class QueueStats(msgspec.Struct, frozen=True):
    """The seed's ``getQueueStats()`` shape; ``total`` leaves out cancelled and expired
    jobs (neither ran)."""

    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    total: int
    cancelled: int = 0
    paused: bool = False
    users_waiting: int = 0
    """Users with at least one waiting job."""
    users_active: int = 0
    """Users with at least one running job."""
    expired: int = 0
    """Jobs that did not start before their deadline."""
