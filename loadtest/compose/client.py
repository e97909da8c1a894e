"""The user's side of ``just compose-test``: the seed's flow over the published port, and
characters submitted by several users at a steady pace while the stack is being broken.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

FINAL = ("completed", "failed", "cancelled", "expired")


class FlowError(RuntimeError):
    """The service answered something the seed's flow does not allow."""


@dataclass
class Submitted:
    """What a load phase sent: accepted jobs (201) and requests that got no job."""

    jobs: dict[str, tuple[Api, str]] = field(default_factory=dict)  # job -> owner, character
    refused: dict[str, int] = field(default_factory=dict)  # status or error -> count

    def refuse(self, why: str) -> None:
        self.refused[why] = self.refused.get(why, 0) + 1


def submit(apis: list[Api], count: int, prefix: str) -> Submitted:
    """``count`` characters, the users taking turns, as fast as the API answers."""
    sent = Submitted()
    for n in range(count):
        made = apis[n % len(apis)].create(f"{prefix} {n}")
        if isinstance(made, str):
            sent.refuse(made)
        else:
            sent.jobs[made[1]] = (apis[n % len(apis)], made[0])
    return sent


class Api:
    """One user's view of the API at ``base_url``."""

    def __init__(self, base_url: str, key: str) -> None:
        self.key = key
        self.http = httpx.Client(base_url=base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {key}"})  # fmt: skip
        self._poses: list[str] = []
        self._elsewhere: dict[str, Api] = {}

    def at(self, base_url: str) -> Api:
        """The same user through another API (server)."""
        if base_url not in self._elsewhere:
            self._elsewhere[base_url] = Api(base_url, self.key)
        return self._elsewhere[base_url]

    def data(self, method: str, path: str, body: object = None) -> Any:
        """The answer's ``data``, waiting out 429s as ``Retry-After`` says (a polite client:
        each user may send ``API_USER_RPS`` requests a second)."""
        for _ in range(30):
            answer = self.http.request(method, path, json=body)
            if answer.status_code != 429:
                break
            time.sleep(float(answer.headers.get("Retry-After", "1")))
        if not answer.is_success:
            raise FlowError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json()["data"]

    def create(self, name: str, priority: str = "normal") -> tuple[str, str] | str:
        """``(character id, job id)``, or why no job was made (a status or an error)."""
        if not self._poses:
            self._poses = [p["_id"] for p in self.data("GET", "/api/v1/poses")]
        body = {"name": name, "priority": priority,
                "personality": {"poseId": self._poses[len(name) % len(self._poses)]}}  # fmt: skip
        try:
            answer = self.http.post("/api/v1/characters", json=body)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if answer.status_code != 201:
            return str(answer.status_code)
        made = answer.json()["data"]
        return made["_id"], made["imageJob"]["id"]

    def job(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.data("GET", f"/api/v1/generations/{job_id}")
        return found

    def character(self, character_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.data("GET", f"/api/v1/characters/{character_id}")
        return found

    def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = self.data("GET", "/api/v1/queue/stats")
        return found

    def png(self, url: str) -> bytes:
        answer = self.http.get(url)
        while answer.status_code == 429:
            time.sleep(float(answer.headers.get("Retry-After", "1")))
            answer = self.http.get(url)
        if answer.status_code != 200 or not answer.content.startswith(b"\x89PNG"):
            raise FlowError(f"GET {url}: {answer.status_code}, not a PNG")
        return answer.content


def wait_final(jobs: dict[str, tuple[Api, str]], timeout_s: float) -> dict[str, dict[str, Any]]:
    """Every job's record (each asked of its owner) once all are final; raises at the
    deadline with the counts."""
    deadline = time.monotonic() + timeout_s
    done: dict[str, dict[str, Any]] = {}
    job_ids = list(jobs)
    while True:
        for job_id in [j for j in job_ids if j not in done]:
            try:
                job = jobs[job_id][0].job(job_id)
            except (FlowError, httpx.HTTPError):
                continue  # a restart in progress: asked again next round
            if job["state"] in FINAL:
                done[job_id] = job
        if len(done) == len(job_ids):
            return done
        if time.monotonic() > deadline:
            raise FlowError(f"{len(job_ids) - len(done)} of {len(job_ids)} jobs not final "
                            f"after {timeout_s:.0f} s")  # fmt: skip
        time.sleep(1)


def seed_flow(api: Api, login: Callable[[], bool]) -> dict[str, Any]:
    """The seed's flow: create a character, follow it to its image, fetch the PNG, read the
    stats, log in to the dashboard; the figures."""
    started = time.monotonic()
    made = api.create("Seed Flow Character")
    if isinstance(made, str):
        raise FlowError(f"creating a character was answered {made}")
    character_id, job_id = made
    job = wait_final({job_id: (api, character_id)}, timeout_s=180)[job_id]
    if job["state"] != "completed":
        raise FlowError(f"the seed flow's job ended {job['state']}")
    character = api.character(character_id)
    urls = character.get("displayImageUrls") or []
    if len(urls) != 1:
        raise FlowError(f"the character shows {len(urls)} images, not one")
    png = api.png(urls[0])
    stats = api.stats()
    return {"seed_flow_s": round(time.monotonic() - started, 2), "png_bytes": len(png),
            "stats_completed": stats["completed"], "dashboard_login": login()}  # fmt: skip


def dashboard_login(base_url: str, username: str, password: str) -> bool:
    """Log in to ``/admin/queues`` as a browser would; True when the page then opens."""
    with httpx.Client(base_url=base_url, timeout=30) as browser:
        answer = browser.post(
            "/admin/queues/login", data={"username": username, "password": password}
        )
        if answer.status_code != 303:
            return False
        return browser.get("/admin/queues").status_code == 200


class Submitter:
    """Characters from several users at ``per_second`` in all, in a thread, until stopped."""

    def __init__(self, apis: list[Api], per_second: float, prefix: str) -> None:
        self.apis, self.gap_s, self.prefix = apis, 1 / per_second, prefix
        self.sent = Submitted()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Submitter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            made = self.apis[n % len(self.apis)].create(f"{self.prefix} {n}")
            if isinstance(made, str):
                self.sent.refuse(made)
            else:
                self.sent.jobs[made[1]] = (self.apis[n % len(self.apis)], made[0])
            n += 1
            self._stop.wait(self.gap_s)


def one_image_each(jobs: dict[str, tuple[Api, str]], records: dict[str, dict[str, Any]]) -> bool:
    """Every job completed, and its character shows exactly one image, a PNG."""
    for job_id, (api, character_id) in jobs.items():
        if records[job_id]["state"] != "completed":
            return False
        character = api.character(character_id)
        urls = character.get("displayImageUrls") or []
        if len(urls) != 1:
            return False
        api.png(urls[0])
    return True
