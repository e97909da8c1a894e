"""Request and response bodies of the HTTP API, as msgspec structs (the seed's JSON shapes).

Requests refuse unknown fields; names are the seed's camelCase on the wire.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

from imagequeue_api.webhook_schemas import EnableEndpoint

T = TypeVar("T")
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
Id = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
_ID = re.compile(ID_PATTERN)


def is_id(text: str) -> bool:
    """True when ``text`` has the shape of our ids (one in a URL that has not cannot exist)."""
    return _ID.fullmatch(text) is not None


# Text holds no control characters (a NUL cannot even be stored in PostgreSQL); a
# description may span lines. Whole-string patterns: msgspec searches, never matches.
_LINE = r"^[^\x00-\x1f\x7f]*$"
# Linear: the leading class (blanks) and the next (visible) are disjoint, so no backtracking.
_VISIBLE_LINE = r"^[^\S\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
_LINES = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"
PATTERN_MEANINGS = {
    _LINE: "must be one line without control characters",
    _VISIBLE_LINE: "must be one line with a visible character and no control characters",
    _LINES: "must not contain control characters other than tab and line breaks",
}
"""What each text pattern asks, in words: the message a client gets instead of the regex."""
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=120, pattern=_VISIBLE_LINE)]
Trait = Annotated[str, msgspec.Meta(max_length=200, pattern=_LINE)]
Description = Annotated[str, msgspec.Meta(max_length=2000, pattern=_LINES)]
PriorityName = Literal["high", "normal", "low"]
StartDeadline = Annotated[float, msgspec.Meta(ge=0, le=7 * 86400)]
WEBHOOK_URL_PATTERN = (
    r"^[Hh][Tt][Tt][Pp][Ss]?://([A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?"
    r"([/?][!-\"$-~]*)?$"
)
"""http(s), a host name or IP address (IPv6 in brackets), an optional port, then printable
ASCII without a fragment: no user name, password, space or control character."""
WebhookUrl = Annotated[
    str, msgspec.Meta(min_length=1, max_length=2048, pattern=WEBHOOK_URL_PATTERN)
]
WebhookEvent = Literal["started", "progress", "completed", "failed", "cancelled", "expired"]
WebhookEvents = Annotated[list[WebhookEvent], msgspec.Meta(min_length=1, max_length=6)]
"""Seconds a job may wait to start, else it expires (0: no deadline; at most a week)."""


class Personality(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """The seed's ``personality``: the chosen pose and a few traits for the prompt."""

    pose_id: Id
    traits: Annotated[list[Trait], msgspec.Meta(max_length=20)] = []
    style: Trait = ""
    mood: Trait = ""


class CreateCharacter(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """``POST /api/v1/characters``."""

    name: Name
    personality: Personality
    description: Description = ""
    priority: PriorityName | None = None
    """Ask for a lower priority than your tier gives (never a higher one)."""
    start_deadline_seconds: StartDeadline | None = None
    """Start within this many seconds or not at all (the job ends ``expired``); 0: no
    deadline; absent: the server's default for the priority (``START_DEADLINE_S``)."""
    webhook: WebhookUrl | None = None
    """An https URL to POST the image job's events to, signed per Standard Webhooks with
    the key's webhook secret (http only where ``WEBHOOK_ALLOW_HTTP`` is set)."""
    webhook_events: WebhookEvents | None = None
    """The events to send (default: the final ones: completed, failed, cancelled, expired)."""


class ImageJob(msgspec.Struct, frozen=True, rename="camel"):
    """A character's image job as the character view shows it."""

    id: str
    status: str
    """The job's state; ``gone`` once a finished job was cleaned after retention (the
    character's images say whether it made one), ``disabled`` when generation is off."""
    position: int | None = None
    eta_seconds: float | None = None


class CharacterOut(msgspec.Struct, frozen=True, rename="camel"):
    """A character in the seed's shape (``_id``, ``displayImageUrls``)."""

    id: str = msgspec.field(name="_id")
    name: str = ""
    description: str = ""
    personality: dict[str, Any] = {}
    display_image_urls: list[str] = []
    image_job: ImageJob | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


class Envelope(msgspec.Struct, Generic[T], frozen=True):
    """The seed's ``{"success": true, "data": ...}``."""

    data: T
    success: bool = True


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of a list."""

    items: list[T]
    total: int
    limit: int
    offset: int


class PoseOut(msgspec.Struct, frozen=True):
    """A pose the characters can take."""

    id: str = msgspec.field(name="_id")
    name: str = ""


class CreateGeneration(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """``POST /api/v1/generations``: one more image of a character (the seed's manual job)."""

    character_id: Id
    pose_id: Id | None = None
    priority: PriorityName | None = None
    start_deadline_seconds: StartDeadline | None = None
    """As for ``POST /api/v1/characters``."""
    webhook: WebhookUrl | None = None
    """As for ``POST /api/v1/characters``."""
    webhook_events: WebhookEvents | None = None
    """As for ``POST /api/v1/characters``."""
    deduplicate: bool = True
    """While an image of this character in this pose is waiting or running, answer that
    job (200) instead of queueing another; false: always queue a new one (202)."""


class GenerationOut(msgspec.Struct, frozen=True, rename="camel"):
    """A generation job: state, progress, place in the queue and its ETA."""

    id: str
    state: str
    priority: str
    character_id: str
    progress: int = 0
    progress_message: str = ""
    attempts: int = 0
    max_attempts: int = 0
    stalls: int = 0
    """Runs taken back from a worker that stopped renewing its lease (it crashed or lost
    Redis) and started again elsewhere; they do not use up attempts."""
    last_error: str | None = None
    result_url: str | None = None
    position: int | None = None
    eta_seconds: float | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    start_by: float | None = None
    """Its deadline to start (Unix seconds): still waiting then, it ends ``expired``."""


class ProgressOut(msgspec.Struct, frozen=True):
    """A ``progress`` event's data: how far the job's run is."""

    id: str
    progress: Annotated[int, msgspec.Meta(ge=0, le=100)]
    message: str


class EventsTokenOut(msgspec.Struct, frozen=True, rename="camel"):
    """A job-scoped token for a browser's ``EventSource``."""

    token: str
    events_url: str
    """The events route with the token, relative to the API's origin."""
    expires_in: int
    """Seconds the token may be used to (re)connect; an open stream is not cut at expiry."""


class QueueStatsOut(msgspec.Struct, frozen=True, rename="camel"):
    """The seed's ``getQueueStats()`` plus live throughput and workers."""

    waiting: int
    active: int
    completed: int
    failed: int
    delayed: int
    total: int
    cancelled: int
    expired: int
    """Jobs that did not start before their deadline (they never ran)."""
    paused: bool
    users_waiting: int
    """Users with at least one waiting job (fair share takes turns between them)."""
    users_active: int
    """Users with at least one running job."""
    jobs_per_minute: float
    live_workers: int
    rate_limit_max: int
    rate_limit_duration_ms: int
    slots: int
    """Concurrent jobs the live workers can run."""
    mean_job_seconds: float
    """Recent mean run time (last minute, else lifetime, else the seed's 45 s)."""
    capacity_per_second: float
    """Job starts per second the queue sustains now: the rate limit or slots ÷ mean job
    time, whichever is lower (the observed rate when every slot is busy and it is lower)."""
    drain_eta_seconds: float | None
    """Time to finish the waiting and delayed jobs at that rate; null with no live worker."""


class RotateWebhookSecret(msgspec.Struct, frozen=True, forbid_unknown_fields=True,
                          rename="camel"):  # fmt: skip
    """``POST /api/v1/webhook-secret/rotate``."""

    grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=30 * 86400)] = 86400
    """How long the old secret signs beside the new one (0 to 30 days; a number, as JSON
    Schema's integers are: ``60.0`` is 60)."""


class WebhookSecretOut(msgspec.Struct, frozen=True, rename="camel"):
    """A new webhook signing secret, shown this once."""

    webhook_secret: str
    previous_valid_until: float
    """Unix seconds until which the old secret signs too."""


REQUEST_BODIES = (
    CreateCharacter,
    Personality,
    CreateGeneration,
    RotateWebhookSecret,
    EnableEndpoint,
)
"""The structs that refuse unknown fields (``additionalProperties: false`` in OpenAPI)."""
EXACT_SCHEMAS = (*REQUEST_BODIES, ProgressOut)
"""The structs the OpenAPI document shows as msgspec describes them (every constraint)."""
