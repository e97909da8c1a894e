"""The Locust suite: each simulated user creates one character and follows it to its image.

Run by ``python -m loadtest.run`` (which starts the stack, makes the API keys and passes
them in ``--plan-file``); by hand::

    locust -f loadtest/locustfile.py --headless -u 100 -r 20 --host http://127.0.0.1:8088 \\
        --plan-file plan.json --results-file results.json

A user: POST a character (its job is queued in the same request), poll
``GET /api/v1/generations/{id}`` every ``poll_min_s``-``poll_max_s`` (jittered by Locust's
wait time) until the job ends, GET the image URL and check it is a PNG, then idle. A
flooder (the flood scenario; its client has ``characters`` > 1) POSTs all its characters
first, one request per ``pace_s``, then follows them oldest first in the same way. When
every user is done the run quits by itself, so ``--run-time`` is only a ceiling.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any, ClassVar

import gevent  # type: ignore[import-untyped]  # gevent ships neither types nor stubs
from locust import FastHttpUser, events, task
from locust.argument_parser import LocustArgumentParser
from locust.contrib.fasthttp import ResponseContextManager
from locust.env import Environment

from loadtest.campaign import (
    FINAL_STATES,
    GET_GENERATION,
    GET_IMAGE,
    POST_CHARACTER,
    Client,
    Histogram,
    Outcome,
    Plan,
    Results,
    read_plan,
    write_results,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Campaign:
    """The run's shared state in the Locust process (one per run, made at ``init``).

    Hands each new user the next client of the plan, collects the users' outcomes, and
    quits the run once every planned user is done. Locust users are greenlets of one
    thread, so no lock is needed.
    """

    def __init__(self, environment: Environment, plan: Plan, results_path: Path) -> None:
        self.environment = environment
        self.plan = plan
        self.results_path = results_path
        self.outcomes: list[Outcome] = []
        """Every started user's outcome, finished or not (written as the run quits)."""
        self._next = count()
        self._done = 0

    def enlist(self) -> Client:
        """The next client of the plan (one per user, in spawn order)."""
        index = next(self._next)
        if index >= len(self.plan.clients):
            raise RuntimeError(f"more users than the plan's {len(self.plan.clients)} clients")
        return self.plan.clients[index]

    def outcome(self, client: Client) -> Outcome:
        """A new outcome of ``client``'s: one per character it makes."""
        outcome = Outcome(user_id=client.user_id, tier=client.tier)
        self.outcomes.append(outcome)
        return outcome

    def finished(self) -> None:
        """One user is done; the last one ends the run."""
        self._done += 1
        runner = self.environment.runner
        if self._done == len(self.plan.clients) and runner is not None:
            # From a greenlet of its own: quitting kills every user, and a user that called
            # quit itself would die in the middle of it, leaving the run half stopped.
            gevent.spawn(runner.quit)

    def write(self) -> None:
        """Write every outcome and each request name's response-time histogram."""
        histograms = [
            Histogram(entry.method or "", entry.name, entry.num_requests, entry.num_failures,
                      dict(entry.response_times))
            for entry in self.environment.stats.entries.values()
        ]  # fmt: skip
        write_results(self.results_path, Results(self.outcomes, histograms))


def _add_arguments(parser: LocustArgumentParser, **_kwargs: Any) -> None:
    parser.add_argument("--plan-file", default="", help="the run's plan (keys, poses), JSON")
    parser.add_argument("--results-file", default="", help="where to write the outcomes")


def _start_campaign(environment: Environment, **_kwargs: Any) -> None:
    options = environment.parsed_options
    if options is None or not options.plan_file:
        raise SystemExit("loadtest: --plan-file is required (python -m loadtest.run makes one)")
    results = Path(options.results_file or "results.json")
    CharacterUser.campaign = Campaign(environment, read_plan(Path(options.plan_file)), results)


def _write_results(environment: Environment, **_kwargs: Any) -> None:
    del environment
    if CharacterUser.campaign is not None:
        CharacterUser.campaign.write()


for _hook, _listener in (
    (events.init_command_line_parser, _add_arguments),
    (events.init, _start_campaign),
    (events.quitting, _write_results),
):
    # Not as decorators: locust leaves add_listener unannotated, which strict mypy refuses.
    _hook.add_listener(_listener)  # type: ignore[no-untyped-call]


def _json_data(response: ResponseContextManager) -> dict[str, Any]:
    """The ``data`` member of an API envelope."""
    data: dict[str, Any] = response.json()["data"]
    return data


class CharacterUser(FastHttpUser):
    """One client of the API: one character, followed until its image is fetched."""

    campaign: ClassVar[Campaign | None] = None

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if self.campaign is None:
            raise RuntimeError("the campaign was not started (no --plan-file)")
        self.plan = self.campaign.plan
        self.me = self.campaign.enlist()
        self.outcome = self.campaign.outcome(self.me)
        """The outcome of the character the user is creating or following now."""
        self.headers = {"Authorization": f"Bearer {self.me.key}"}
        self.result_url: str | None = None
        self.pace: float | None = None
        """The next pause when it is not a poll's (a flooder's ``pace_s``)."""
        self.steps: Iterator[None] = self._flood() if self.me.characters > 1 else self._life()

    def wait_time(self) -> float:
        """The pause between two polls: uniform in the plan's interval (spreads the load);
        a flooder's other requests: its pace."""
        if self.pace is not None:
            return self.pace
        return random.uniform(self.plan.poll_min_s, self.plan.poll_max_s)  # noqa: S311

    @task
    def step(self) -> None:
        """One step of the user's life per Locust task run; nothing once it is done."""
        next(self.steps, None)

    def _life(self) -> Iterator[None]:
        if self._create():
            yield
            while self._poll():
                yield
            if self.outcome.state == "completed":
                self._fetch_image()
        if self.campaign is not None:
            self.campaign.finished()

    def _flood(self) -> Iterator[None]:
        """A flooder: every character at its pace, then each followed, oldest first."""
        made = []
        self.pace = self.plan.pace_s
        for n in range(self.me.characters):
            if n and self.campaign is not None:
                self.outcome = self.campaign.outcome(self.me)
            if not self._create():
                break
            made.append(self.outcome)
            yield
        for self.outcome in made:
            self.pace = None
            while self._poll():
                yield
            self.pace = self.plan.pace_s
            yield
            if self.outcome.state == "completed":
                self._fetch_image()
                yield
        if self.campaign is not None:
            self.campaign.finished()

    def _create(self) -> bool:
        """POST the character; True when its job was queued."""
        body = {"name": f"Load {self.outcome.user_id}",
                "personality": {"poseId": random.choice(self.plan.pose_ids)}}  # noqa: S311  # fmt: skip
        if self.plan.webhook_url:
            body |= {"webhook": f"{self.plan.webhook_url}/{self.outcome.user_id}",
                     "webhookEvents": ["completed"]}  # fmt: skip
        self.outcome.posted_at = time.time()
        with self.client.post(POST_CHARACTER, json=body, headers=self.headers,
                              name=POST_CHARACTER, catch_response=True) as response:  # fmt: skip
            if response.status_code != 201:
                self.outcome.state = "post-failed"
                return self._failed(response, f"POST answered {response.status_code}")
            data = _json_data(response)
            self.outcome.character_id = data["_id"]
            self.outcome.job_id = data["imageJob"]["id"]
            self.outcome.state = data["imageJob"]["status"]
            self.outcome.eta_s = data["imageJob"]["etaSeconds"]
        return True

    def _poll(self) -> bool:
        """GET the job once; True while it is unfinished."""
        self.outcome.polls += 1
        with self.client.get(f"/api/v1/generations/{self.outcome.job_id}",
                             headers=self.headers, name=GET_GENERATION,
                             catch_response=True) as response:  # fmt: skip
            if response.status_code != 200:
                return self._failed(response, f"GET job answered {response.status_code}")
            job = _json_data(response)
        self.outcome.state = job["state"]
        if self.outcome.state not in FINAL_STATES:
            return True
        self.outcome.finished_at = job["finishedAt"]
        self.result_url = job["resultUrl"]
        if self.outcome.state != "completed":
            self.outcome.error = f"job {self.outcome.state}: {job['lastError']}"
        return False

    def _fetch_image(self) -> None:
        """GET the image URL and check it is a PNG."""
        if not self.result_url:
            self.outcome.error = "completed without a resultUrl"
            return
        with self.client.get(self.result_url, headers=self.headers, name=GET_IMAGE,
                             catch_response=True) as response:  # fmt: skip
            content = response.content or b""
            self.outcome.image_bytes = len(content)
            if response.status_code != 200 or not content.startswith(PNG_SIGNATURE):
                self._failed(response, f"image answered {response.status_code}, not a PNG")
                return
        self.outcome.image_ok = True

    def _failed(self, response: ResponseContextManager, what: str) -> bool:
        """Mark ``response`` failed in Locust's statistics and the outcome; False."""
        self.outcome.error = f"{what}: {(response.text or '')[:200]}"
        response.failure(what)  # type: ignore[no-untyped-call]  # locust leaves it unannotated
        return False
