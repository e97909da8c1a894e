"""What the system did over time, sampled while Locust runs.

Every second the queue's counts through ``GET /api/v1/queue/stats`` (with a key of its own,
so these requests are not in Locust's statistics); every half turn of the stub's ``recent`` log
(2000 submissions) that log, merged, so runs longer than 2000 submissions stay complete.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec

from loadtest.stack import say

STATES = ("waiting", "active", "delayed", "completed", "failed")
STUB_KEEPS = 2000
"""Submissions the stub's ``recent`` holds; older ones roll off."""
PROGRESS_EVERY_S = 10.0


class QueueSample(msgspec.Struct, frozen=True, array_like=True):
    """The queue's counts at unix time ``t``."""

    t: float
    waiting: int
    active: int
    delayed: int
    completed: int
    failed: int


class Sampler:
    """Samples the queue and the stub until :meth:`run`'s ``stop`` event is set."""

    def __init__(self, api_url: str, key: str, stub_url: str, users: int, rate_limit: int) -> None:
        self.api_url = api_url
        self.stub_url = stub_url
        # Building 2000 entries stalls the stub's event loop for milliseconds, which would
        # bunch the arrivals it timestamps: read them only as often as the log turns over.
        self.stub_every_s = max(5.0, STUB_KEEPS / rate_limit / 2)
        self.headers = {"Authorization": f"Bearer {key}"}
        self.users = users
        self.queue: list[QueueSample] = []
        self.submissions: dict[tuple[float, str | None], float] = {}
        """Upstream submissions by (arrival, job id) → arrival, unix seconds."""
        self.errors = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Sample once a second until ``stop`` is set, then take the stub's last view."""
        async with httpx.AsyncClient(timeout=5) as client:
            started = time.monotonic()
            next_stub = next_progress = started
            while not stop.is_set():
                tick = time.monotonic()
                await self._sample_queue(client)
                if tick >= next_stub:
                    await self.merge_stub(client)
                    next_stub = tick + self.stub_every_s
                if tick >= next_progress and self.queue:
                    self._progress(tick - started)
                    next_progress = tick + PROGRESS_EVERY_S
                # Sleep to the next whole second of the run, or wake when told to stop.
                delay = max(0.0, 1.0 - (time.monotonic() - tick))
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    continue
            await self.merge_stub(client)

    async def _sample_queue(self, client: httpx.AsyncClient) -> None:
        try:
            answer = await client.get(f"{self.api_url}/api/v1/queue/stats", headers=self.headers)
            data: dict[str, Any] = answer.raise_for_status().json()["data"]
        except (httpx.HTTPError, ValueError, KeyError):
            # A missed sample is a gap in a chart, not a reason to stop the run.
            self.errors += 1
            return
        self.queue.append(QueueSample(time.time(), *(int(data[s]) for s in STATES)))

    async def merge_stub(self, client: httpx.AsyncClient) -> None:
        """Add the stub's recent submissions to :attr:`submissions`."""
        try:
            answer = await client.get(f"{self.stub_url}/stub/stats")
            recent: list[dict[str, Any]] = answer.raise_for_status().json()["recent"]
        except (httpx.HTTPError, ValueError, KeyError):
            self.errors += 1
            return
        for entry in recent:
            self.submissions[(entry["t"], entry.get("request_id"))] = entry["t"]

    def _progress(self, elapsed_s: float) -> None:
        last = self.queue[-1]
        say(f"{elapsed_s:5.0f} s: {last.completed}/{self.users} completed, "
            f"waiting {last.waiting}, active {last.active}, delayed {last.delayed}, "
            f"failed {last.failed}")  # fmt: skip
