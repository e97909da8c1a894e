"""What ``run.py`` hands the Locust process, and what the Locust process hands back.

The plan (API keys, poses, poll interval) goes in as a JSON file readable only by its owner:
it holds live keys. The results (one outcome per simulated user and the response-time
histograms of every request name) come back as JSON and never hold a key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

import msgspec

Tier = Literal["premium", "regular", "bulk"]
FINAL_STATES: Final = frozenset({"completed", "failed", "cancelled"})

POST_CHARACTER = "/api/v1/characters"
GET_GENERATION = "/api/v1/generations/[id]"
GET_IMAGE = "/assets/characters/[image]"
API_NAMES: Final = frozenset({POST_CHARACTER, GET_GENERATION})
"""The request names the API latency targets cover; image downloads are static files."""


class Client(msgspec.Struct, frozen=True):
    """One simulated user's identity: its user id, tier and API key, and how many
    characters it makes (more than one: a flooder of the flood scenario)."""

    user_id: str
    tier: Tier
    key: str
    characters: int = 1


class Plan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the simulated users need: one client each, the poses, the poll pacing."""

    clients: list[Client]
    pose_ids: list[str]
    poll_min_s: float
    poll_max_s: float
    webhook_url: str = ""
    """``--webhooks``: the receiver's base URL; each user's characters ask for their
    ``completed`` at ``<webhook_url>/<user id>``."""
    pace_s: float = 0.1
    """A flooder's pause after each of its requests but the polls of an unfinished job:
    one request per ``pace_s`` stays under the API's per-user rate (``API_USER_RPS``)."""


class Outcome(msgspec.Struct, kw_only=True):
    """What happened to one simulated user's character, as the user saw it (a flooder has
    one per character)."""

    user_id: str
    tier: Tier
    character_id: str | None = None
    job_id: str | None = None
    posted_at: float | None = None
    """Unix seconds just before the POST was sent."""
    eta_s: float | None = None
    """The ``imageJob.etaSeconds`` the POST answered (None: none was given)."""
    state: str = "unfinished"
    """The job's last seen state; ``post-failed`` when no character was made."""
    finished_at: float | None = None
    """The job's finish time as the API reported it (Redis server clock, unix seconds)."""
    image_bytes: int = 0
    image_ok: bool = False
    """The image URL answered 200 with a PNG."""
    polls: int = 0
    error: str = ""


class Histogram(msgspec.Struct, frozen=True):
    """One request name's response times as Locust counted them (ms, Locust's rounding)."""

    method: str
    name: str
    requests: int
    failures: int
    response_times: dict[int, int]


class Results(msgspec.Struct, frozen=True):
    """The Locust process's answer."""

    outcomes: list[Outcome]
    histograms: list[Histogram]


class Heard(msgspec.Struct, frozen=True):
    """One request the receiver got."""

    at: float
    msg_id: str
    user: str
    job: str | None
    event: str | None
    verified: bool
    finished_at: float | None


class WebhookFacts(msgspec.Struct, frozen=True):
    """The completed jobs the run made, and what the receiver heard."""

    completed_jobs: list[str]
    heard: list[Heard]


def write_plan(path: Path, plan: Plan) -> None:
    """Write ``plan`` to ``path``, created with mode 0600 (it holds live API keys)."""
    write_private(path, msgspec.json.encode(plan))


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path``, created with mode 0600 (keys, webhook secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def read_plan(path: Path) -> Plan:
    """The plan written by :func:`write_plan`."""
    return msgspec.json.decode(path.read_bytes(), type=Plan)


def write_results(path: Path, results: Results) -> None:
    """Write the Locust process's results."""
    path.write_bytes(msgspec.json.encode(results))


def read_results(path: Path) -> Results:
    """The results written by :func:`write_results`."""
    return msgspec.json.decode(path.read_bytes(), type=Results)
