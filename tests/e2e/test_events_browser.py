"""A browser's own ``EventSource`` follows a job from a page on another origin, with a
job-scoped token (it cannot send headers), and stops by itself once the job has ended."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser
from redis.asyncio import Redis

from imagequeue_common.embedded_redis import free_port
from imagequeue_common.settings import Settings, replace
from tests.support.api import ApiServer
from tests.support.procs import WorkerProcess, start_workers, wait_workers_ready, worker_env
from tests.support.stub import StubServer

pytestmark = pytest.mark.slow
DEV_KEY = "dev-key-for-the-eventsource-test"
AUTH = {"Authorization": f"Bearer {DEV_KEY}"}
FOLLOW = """async (url) => {
  const seen = {opens: 0, states: [], progress: [], messages: 0, ids: []};
  window.seen = seen;
  const source = new EventSource(url);
  window.source = source;
  source.onopen = () => { seen.opens += 1; };
  source.onmessage = () => { seen.messages += 1; };  // unnamed events: none expected
  source.addEventListener("state", (e) => {
    seen.states.push(JSON.parse(e.data).state); seen.ids.push(e.lastEventId); });
  source.addEventListener("progress", (e) => { seen.progress.push(JSON.parse(e.data).progress); });
}"""


@pytest.fixture
def stack(settings: Settings, stub_ai: StubServer, tmp_path: Path) -> Settings:
    stub_ai.configure(time_scale=0.05)
    return replace(settings, ai_generation_api_url=f"{stub_ai.url}/generate",
                   database_url=f"sqlite:///{tmp_path}/db.sqlite",
                   assets_dir=str(tmp_path / "assets"))  # fmt: skip


@pytest.fixture
def api(stack: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(worker_env(stack, api_dev_key=DEV_KEY), tmp_path / "api.log").start()
    yield server
    server.stop()


@pytest.fixture
def other_origin(tmp_path: Path) -> Iterator[str]:
    """A plain page on another port: the app's own site, not ours."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<!doctype html><title>app</title>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(tmp_path / "site"), **kwargs)

        def log_message(self, format: str, *args: Any) -> None:  # the stdlib's name
            del format, args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/index.html"
    server.shutdown()
    server.server_close()


async def test_eventsource_follows_with_a_token_and_stops_after_the_end(
    browser: Browser, api: ApiServer, other_origin: str, workers: list[WorkerProcess],
    redis: Redis, stack: Settings,
) -> None:  # fmt: skip
    async with httpx.AsyncClient(base_url=api.url, headers=AUTH) as client:
        character = {"name": "Aria", "personality": {"poseId": "pose-standing"}}
        made = await client.post("/api/v1/characters", json=character)
        job_id = made.raise_for_status().json()["data"]["imageJob"]["id"]
        grant = (await client.post(f"/api/v1/generations/{job_id}/events-token")).json()["data"]
    context = await browser.new_context()
    page = await context.new_page()
    try:
        await page.goto(other_origin)
        await page.evaluate(FOLLOW, f"{api.url}{grant['eventsUrl']}")
        await page.wait_for_function("window.seen.states.length >= 1", timeout=15_000)
        start_workers(workers, stack)
        await wait_workers_ready(redis, stack, 1)
        # Ended: the stream closes, EventSource reconnects once (Last-Event-ID), gets 204
        # and closes for good (readyState 2) instead of reconnecting forever.
        await page.wait_for_function("window.source.readyState === 2", timeout=30_000)
        seen = await page.evaluate("window.seen")
        assert (seen["states"][0], seen["states"][-1]) == ("waiting", "completed")
        assert seen["progress"] == [10, 80, 100]
        assert (seen["opens"], seen["messages"]) == (1, 0)
        assert all(seen["ids"])

        refused = await page.evaluate("""async (url) => new Promise((done) => {
            const source = new EventSource(url);
            source.onerror = () => done(source.readyState); })""",
            f"{api.url}/api/v1/generations/{job_id}/events")  # fmt: skip
        assert refused == 2  # no token, no header: 401, and EventSource gives up
    finally:
        await context.close()
