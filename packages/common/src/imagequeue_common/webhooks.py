"""Webhooks (#16), what the API and the webhook workers share: the events a client may ask
for, the checks of a webhook URL, the body of a delivery and the delivery job's payload.

A job asks for webhooks through three labels: ``webhook`` (the URL), ``webhook_events``
(the events' names, comma-separated) and ``webhook_key`` (the API key whose secret signs
them). The engine keeps the events as letters in the job hash (``hk``); every state change
the Lua scripts emit of a subscribed event also goes to the queue's ``outbox`` stream, in
the same atomic call, so no event of an accepted job is lost between the change and its
delivery (``imagequeue_worker.webhook_dispatch`` turns outbox entries into deliveries).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any

import msgspec

from imagequeue_common.contracts import GenerateImageResult, JobState
from imagequeue_common.queue.jobs import Job

EVENTS: dict[str, str] = {
    "started": "s", "progress": "p", "completed": "c", "failed": "f", "cancelled": "x",
    "expired": "e",
}  # fmt: skip
"""Each event a client may ask for, and its letter in the job hash's ``hk`` field."""
FINAL_EVENTS: tuple[str, ...] = ("completed", "failed", "cancelled", "expired")
"""The default: the job's end, whichever it is."""
ENGINE_EVENTS: dict[str, str] = {"active": "started"}
"""The engine's event names that differ from the webhook's (a run starting is ``active``)."""
MAX_URL_LENGTH = 2048
WEBHOOK_LABELS = ("webhook", "webhook_events", "webhook_key")


def event_letters(events: Iterable[str]) -> str:
    """The ``hk`` letters of ``events`` (names of :data:`EVENTS`; ``ValueError`` for others)."""
    letters = []
    for name in events:
        if name not in EVENTS:
            known = ", ".join(EVENTS)
            raise ValueError(f"unknown webhook event {name!r}: use some of {known}")
        letters.append(EVENTS[name])
    return "".join(sorted(set(letters)))


def webhook_event(engine_event: str) -> str:
    """The webhook event an engine event is (``active`` → ``started``)."""
    return ENGINE_EVENTS.get(engine_event, engine_event)


def url_problem(url: str, *, allow_http: bool, private_hosts: Iterable[str] = ()) -> str | None:
    """Why ``url`` cannot be a webhook (None when it can). Only what the URL itself shows:
    its host is resolved, and every address checked, at each delivery."""
    if len(url) > MAX_URL_LENGTH:
        return f"webhook must be at most {MAX_URL_LENGTH} characters"
    if any(ord(ch) <= 32 or ord(ch) == 127 for ch in url):
        return "webhook must not hold spaces or control characters"
    scheme, sep, rest = url.partition("://")
    schemes = ("https", "http") if allow_http else ("https",)
    if not sep or scheme.lower() not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        return f"webhook must be an {allowed} URL"
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:
        return "webhook must not carry a user name or password"
    host = authority.rsplit(":", 1)[0] if not authority.endswith("]") else authority
    if ":" in authority and not authority.endswith("]"):
        port = authority.rsplit(":", 1)[1]
        if not port.isdigit() or not 0 < int(port) < 65536:
            return f"webhook has a bad port {port!r}"
    host = host.strip("[]")
    if not host:
        return "webhook must name a host"
    if "#" in rest:
        return "webhook must not have a fragment"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: checked when it is resolved, at delivery
    if address.is_global or _allowed(address, private_hosts):
        return None
    return f"webhook's address {host} is not a public one"


def _allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address, hosts: Iterable[str]) -> bool:
    for entry in hosts:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


class Delivery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``deliver_webhook`` task's argument: one event of one job for one receiver."""

    msg_id: str
    """The Standard Webhooks ``webhook-id``: the same for every attempt of this delivery."""
    job_id: str
    event: str
    url: str
    key_id: str
    """Whose signing secret(s) sign it (read at each attempt: a rotation applies)."""
    owner: str
    """The user the job belongs to: who may list this delivery."""
    body: str
    """The JSON body, fixed when the delivery was made (retries send the same bytes)."""


def job_body(job: Job, event: str) -> dict[str, Any]:
    """A delivery's body: the job as ``GET /api/v1/generations/{id}`` shows it (without a
    position or ETA, which belong to the moment of asking), its character id, its image
    URL when done, and the event."""
    result = GenerateImageResult.from_stored(job.result)
    final = job.state.is_final
    return {
        "id": job.id,
        "state": job.state.value,
        "priority": job.priority.value,
        "characterId": job.ref,
        "progress": job.progress,
        "progressMessage": job.progress_msg,
        "attempts": job.attempts,
        "maxAttempts": job.max_attempts,
        "lastError": job.error[:500] if job.error else None,
        "resultUrl": result.url if result else None,
        "position": None,
        "etaSeconds": 0.0 if final else None,
        "createdAt": job.created_at / 1000,
        "startedAt": job.started_at / 1000 if job.started_at else None,
        "finishedAt": job.finished_at / 1000 if job.finished_at else None,
        "startBy": job.start_by / 1000 if job.start_by else None,
        "event": event,
        "imageUrl": result.url if result and job.state == JobState.COMPLETED else None,
    }
