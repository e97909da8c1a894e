"""The demo that ``just up`` runs: a well-behaved API client that queues characters.

It paces its requests below the dev user's ``API_USER_RPS``, waits out a ``429`` for as long
as ``Retry-After`` says, and stops at any other error with one line (never a traceback): the
stack it shows off keeps running either way. It follows its own jobs to the end, then says
how close the ETA answered at creation came to the real time each job took.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

_PRIORITIES = ("high", "normal", "normal", "low")
_DONE = ("completed", "failed", "cancelled", "expired", "gone")
_MAX_WAITS = 20
"""429s in a row on one request before the demo gives up on it."""


class DemoError(Exception):
    """A request the demo cannot go on from; its text is the one line to show."""


class PacedClient:
    """At most ``per_second`` requests a second, each retried after a 429's ``Retry-After``."""

    def __init__(
        self, client: httpx.AsyncClient, per_second: float, say: Callable[[str], None]
    ) -> None:
        self.client = client
        self.gap_s = 1 / per_second
        self.say = say
        self._next = 0.0

    async def call(self, method: str, path: str, body: object = None) -> Any:
        """The answer's ``data``; :class:`DemoError` for anything but a success."""
        for _ in range(_MAX_WAITS):
            await self._pace()
            try:
                answer = await self.client.request(method, path, json=body)
            except httpx.HTTPError as exc:
                raise DemoError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from None
            if answer.status_code != 429:
                return _data(method, path, answer)
            wait_s = retry_after_s(answer.headers.get("Retry-After"))
            self.say(f"demo: the API asked to slow down (429); waiting {wait_s:g} s")
            self._next = max(self._next, time.monotonic() + wait_s)
        raise DemoError(f"{method} {path} was refused with 429 {_MAX_WAITS} times in a row")

    async def _pace(self) -> None:
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self.gap_s


def retry_after_s(value: str | None) -> float:
    """``Retry-After`` in seconds (1 when absent or not a number; at most 60)."""
    try:
        return min(max(float(value or 1), 0.0), 60.0)
    except ValueError:
        return 1.0


def _data(method: str, path: str, answer: httpx.Response) -> Any:
    if answer.is_success:
        return answer.json()["data"]
    try:
        detail = str(answer.json().get("detail", ""))
    except ValueError:
        detail = answer.text[:200]
    reason = f"{answer.status_code} {answer.reason_phrase}"
    raise DemoError(f"{method} {path} answered {reason}" + (f": {detail}" if detail else ""))


async def run_demo(
    client: PacedClient, jobs: int, say: Callable[[str], None], report_every_s: float = 2.0
) -> None:
    """Queue ``jobs`` characters (mixed priorities), report the queue until all of them are
    done, then their outcome and how true their ETAs were."""
    poses = await client.call("GET", "/api/v1/poses")
    started = time.monotonic()
    etas: dict[str, float | None] = {}
    characters: list[str] = []
    for i in range(jobs):
        body = {"name": f"Demo Character {i}", "priority": _PRIORITIES[i % 4],
                "personality": {"poseId": poses[i % len(poses)]["_id"]}}  # fmt: skip
        made = await client.call("POST", "/api/v1/characters", body)
        characters.append(made["_id"])
        etas[made["imageJob"]["id"]] = made["imageJob"].get("etaSeconds")
    say(f"queued {jobs} demo jobs")
    while True:
        # The states first: once they are all done, the counts read after them are final,
        # so the last line shows the end (read the other way round, a job finishing in
        # between left the last line one short).
        states = await _job_states(client, characters)
        stats = await client.call("GET", "/api/v1/queue/stats")
        seed = ("waiting", "active", "completed", "failed", "delayed", "total")
        say(" ".join(f"{k}={stats[k]}" for k in seed))
        if all(state in _DONE for state in states.values()):
            break
        await asyncio.sleep(report_every_s)
    outcome = ", ".join(f"{n} {s}" for s in _DONE if (n := list(states.values()).count(s)))
    say(f"demo finished in {time.monotonic() - started:.1f} s: {outcome}")
    for character_id in characters[:3]:
        data = await client.call("GET", f"/api/v1/characters/{character_id}")
        say(f"{data['name']}: {', '.join(data['displayImageUrls']) or 'no image'}")
    say(await _eta_report(client, etas))


async def _job_states(client: PacedClient, characters: list[str]) -> dict[str, str]:
    """Each demo character's image-job state, newest characters first (one request when the
    dev user made nothing else meanwhile)."""
    page = await client.call("GET", f"/api/v1/characters?limit={min(len(characters), 100)}")
    states = {c["_id"]: (c.get("imageJob") or {}).get("status", "") for c in page["items"]}
    for character_id in characters:
        if character_id not in states:
            data = await client.call("GET", f"/api/v1/characters/{character_id}")
            states[character_id] = (data.get("imageJob") or {}).get("status", "")
    return {c: states[c] for c in characters}


async def _eta_report(client: PacedClient, etas: dict[str, float | None]) -> str:
    """The ETA each job was given at creation against its real creation-to-finish time."""
    errors = []
    for job_id, eta in etas.items():
        job = await client.call("GET", f"/api/v1/generations/{job_id}")
        if eta is None or job["state"] != "completed" or not job.get("finishedAt"):
            continue
        real_s = job["finishedAt"] - job["createdAt"]
        errors.append(abs(eta - real_s) / max(real_s, 0.001))
    if not errors:
        return "ETA at creation: no completed job had one (no live worker when it was made)"
    return (
        f"ETA at creation vs real time to finish, over {len(errors)} jobs: median error "
        f"{statistics.median(errors):.0%}, worst {max(errors):.0%}"
    )
