"""The webhook routes' bodies and answers: deliveries, their attempts, endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

DeliveryState = Literal["pending", "succeeded", "failed"]


class EnableEndpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /api/v1/webhooks/endpoints/enable``."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]


class AttemptOut(msgspec.Struct, frozen=True, rename="camel"):
    """One attempt of a delivery."""

    at: float
    """When it ended (Unix seconds)."""
    attempt: int
    outcome: str
    """``delivered``, ``retry`` (tried again later), ``gone`` (410), ``refused`` (the
    address is not allowed, or the key was revoked) or ``disabled`` (not tried)."""
    status: int | None
    """The receiver's HTTP status (none when no answer came)."""
    detail: str
    """The start of the receiver's answer, or the error."""
    elapsed_ms: int


class DeliveryOut(msgspec.Struct, frozen=True, rename="camel"):
    """One event of one job for its webhook."""

    id: str
    """The ``webhook-id`` header: the same on every attempt."""
    job_id: str
    event: str
    url: str
    state: DeliveryState
    attempts: int
    max_attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: float | None
    """When it is tried again (Unix seconds), while pending after a failure."""
    created_at: float
    finished_at: float | None
    attempt_log: list[AttemptOut]


class EndpointOut(msgspec.Struct, frozen=True, rename="camel"):
    """A receiver URL of the caller's that has failed, and whether it is disabled."""

    url: str
    failing_since: float | None
    """Every attempt has failed since then (none: the last one succeeded)."""
    last_error: str
    disabled_at: float | None
    """When it was disabled (it had failed for ``WEBHOOK_DISABLE_AFTER_S``); requests
    naming it are refused (409) until it is enabled again."""
    disabled_why: str
