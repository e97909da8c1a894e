"""The API as a real server process with a real worker and the stub AI: a character's image
followed over Server-Sent Events from creation to the served PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from imagequeue_common.images import check_image
from imagequeue_common.settings import Settings, replace
from tests.support.api import ApiServer
from tests.support.procs import (
    ROOT,
    WorkerProcess,
    start_workers,
    wait_workers_ready,
    worker_env,
)
from tests.support.stub import StubServer

pytestmark = pytest.mark.slow
DEV_KEY = "dev-key-for-the-sse-test"
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}


@pytest.fixture
def stack_settings(settings: Settings, stub_ai: StubServer, tmp_path: Path) -> Settings:
    stub_ai.configure(time_scale=0.01)  # 0.3-0.6 s per image: progress is visible
    return replace(
        settings,
        ai_generation_api_url=f"{stub_ai.url}/generate",
        database_url=f"sqlite:///{tmp_path}/imagequeue.db",
        assets_dir=str(tmp_path / "assets"),
        api_dev_key=DEV_KEY,
    )


@pytest.fixture
def api(stack_settings: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    # Two API processes: the POST, the stream and the reads may each land on either.
    env = worker_env(stack_settings, api_dev_key=DEV_KEY, api_processes=2)
    server = ApiServer(env, tmp_path / "api.log").start()
    yield server
    server.stop()


async def read_events(client: httpx.AsyncClient, url: str) -> list[tuple[str, dict[str, Any]]]:
    """Every SSE event of ``url`` until the server ends the stream."""
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    async with client.stream("GET", url, headers=AUTH) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        async for line in answer.aiter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                events.append((kind, msgspec.json.decode(line.split(":", 1)[1].strip())))
    return events


def test_a_cli_key_works_and_a_revoked_one_does_not(
    api: ApiServer, stack_settings: Settings
) -> None:
    env = {**os.environ, **worker_env(stack_settings), "PYTHONPATH": str(ROOT)}
    made = subprocess.run(
        [sys.executable, "-m", "imagequeue_api", "keys", "create", "--user", "carol",
         "--tier", "bulk"], env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    fields = dict(line.split(": ", 1) for line in made.stdout.splitlines() if ": " in line)
    headers = {"Authorization": f"Bearer {fields['key']}"}
    with httpx.Client(base_url=api.url, timeout=10) as client:
        assert client.get("/api/v1/poses", headers=headers).status_code == 200
        subprocess.run([sys.executable, "-m", "imagequeue_api", "keys", "revoke", fields["key_id"]],
                       env=env, check=True, capture_output=True)  # fmt: skip
        assert client.get("/api/v1/poses", headers=headers).status_code == 401


async def test_sse_follows_a_character_image_to_the_end(
    api: ApiServer,
    workers: list[WorkerProcess],
    redis: Redis,
    stack_settings: Settings,
) -> None:
    start_workers(workers, stack_settings)
    await wait_workers_ready(redis, stack_settings, 1)
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as client:
        made = await client.post(
            "/api/v1/characters",
            json={"name": "Aria Voss", "personality": {"poseId": "pose-standing"}},
            headers=AUTH,
        )
        assert made.status_code == 201, made.text
        character = made.json()["data"]
        job_id = character["imageJob"]["id"]
        events = await read_events(client, f"/api/v1/generations/{job_id}/events")
        progress = [e["progress"] for kind, e in events if kind == "progress"]
        states = [e["state"] for kind, e in events if kind == "state"]
        assert progress == [10, 80, 100]
        assert states[-1] == "completed"
        final = events[-1][1]
        assert final["resultUrl"].startswith("/assets/characters/aria_voss_")
        read = (await client.get(f"/api/v1/characters/{character['_id']}", headers=AUTH)).json()
        assert read["data"]["displayImageUrls"] == [final["resultUrl"]]
        image = await client.get(final["resultUrl"])
        assert image.status_code == 200
        check_image(image.content)
