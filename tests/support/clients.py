"""Clients posting characters at a steady pace through the real API, every answer kept."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

KEY = "dev-key-for-the-outage-tests"
"""The API's development key in the tests that use these clients (``API_DEV_KEY``)."""


class Clients:
    """Characters posted at a steady pace until stopped; every answer kept."""

    def __init__(self, url: str) -> None:
        self.http = httpx.AsyncClient(base_url=url, timeout=10,
                                      headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
        self.statuses: list[int] = []
        self.times: list[float] = []
        """When each answer came (``time.monotonic()``)."""
        self.accepted: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._pausing = asyncio.Event()

    def start(self, per_s: float = 8) -> None:
        """Post (again); a no-op while posting."""
        if self._task is None:
            self._pausing = asyncio.Event()
            self._task = asyncio.create_task(self._post(per_s, self._pausing))

    async def pause(self) -> None:
        """Stop posting once the request in flight is answered (and kept)."""
        task, self._task = self._task, None
        if task is not None:
            self._pausing.set()
            await task

    async def accepted_since(self, moment: float, n: int) -> bool:
        """At least ``n`` answers of 201 came after ``moment`` (``time.monotonic()``)."""
        later = [s for s, t in zip(self.statuses, self.times, strict=True) if t > moment]
        return later.count(201) >= n

    async def close(self) -> None:
        await self.pause()
        await self.http.aclose()

    async def _post(self, per_s: float, pausing: asyncio.Event) -> None:
        n = len(self.statuses)
        while not pausing.is_set():
            n += 1
            body = {"name": f"Restart {n}", "personality": {"poseId": "pose-standing"}}
            answer = await self.http.post("/api/v1/characters", json=body)
            self.statuses.append(answer.status_code)
            self.times.append(time.monotonic())
            if answer.status_code == 201:
                self.accepted.append(answer.json()["data"]["imageJob"]["id"])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pausing.wait(), 1 / per_s)
