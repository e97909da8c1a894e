"""The dashboard in a real headless Chromium against a running API, worker and stub AI."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Dialog, Page, expect
from redis.asyncio import Redis

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings, replace
from tests.support.api import ApiServer
from tests.support.procs import (
    WorkerProcess,
    start_workers,
    wait_until,
    wait_workers_ready,
    worker_env,
)
from tests.support.stub import StubServer

pytestmark = pytest.mark.slow
ARTIFACTS = Path(__file__).parent / "artifacts"
ADMIN = ("admin", "browser-test-admin-1")
DEV_KEY = "dev-key-for-the-browser-test"


@pytest.fixture
def stack(settings: Settings, stub_ai: StubServer, tmp_path: Path) -> Settings:
    # A 3 s GPU: long enough to watch a progress bar sit at 10 % and then move.
    stub_ai.configure(latency_min_s=3, latency_max_s=3, time_scale=1.0, script=["400"])
    return replace(settings, ai_generation_api_url=f"{stub_ai.url}/generate",
                   database_url=f"sqlite:///{tmp_path}/db.sqlite",
                   assets_dir=str(tmp_path / "assets"))  # fmt: skip


@pytest.fixture
def api(stack: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    env = worker_env(stack, api_dev_key=DEV_KEY, admin_password=ADMIN[1])
    server = ApiServer(env, tmp_path / "api.log").start()
    yield server
    server.stop()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    opened = await context.new_page()

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()  # every destructive action asks first; the test says yes

    opened.on("dialog", accept)
    yield opened
    await context.close()


async def create_characters(api: ApiServer, n: int) -> list[str]:
    headers = {"Authorization": f"Bearer {DEV_KEY}"}
    async with httpx.AsyncClient(base_url=api.url, headers=headers) as client:
        jobs = []
        for i in range(n):
            body = {"name": f"Browser {i}", "personality": {"poseId": "pose-standing"}}
            answer = await client.post("/api/v1/characters", json=body)
            jobs.append(answer.raise_for_status().json()["data"]["imageJob"]["id"])
    return jobs


async def login(page: Page, api: ApiServer) -> None:
    await page.goto(f"{api.url}/admin/queues")
    await page.fill("input[name=username]", ADMIN[0])
    await page.fill("input[name=password]", ADMIN[1])
    await page.click("button:has-text('Log in')")
    await expect(page.locator("#overview")).to_be_visible()


async def test_dashboard_in_a_browser(
    page: Page, api: ApiServer, stack: Settings, redis: Redis, workers: list[WorkerProcess]
) -> None:
    ledger = JobLedger(redis, stack)
    created = await create_characters(api, 3)
    await login(page, api)
    # The counts the page shows are the engine's.
    stats = await ledger.stats()
    for state in ("waiting", "active", "completed", "failed", "delayed"):
        await expect(page.locator(f'[data-count="{state}"]')).to_have_text(
            str(getattr(stats, state))
        )
    assert stats.waiting == 3
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "overview.png"), full_page=True)

    # A worker starts: whichever job reaches the stub first meets a 400 (dead letter; the
    # worker runs several at once, so which one is a race), the others take 3 s each.
    start_workers(workers, stack)
    await wait_workers_ready(redis, stack, 1)
    await expect(page.locator('[data-count="failed"]')).to_have_text("1", timeout=15_000)
    states = {job: (await ledger.get_job(job)).state for job in created}
    failing = next(job for job, state in states.items() if state == JobState.FAILED)
    watched, other = (job for job in created if job != failing)

    # Watch a running job's progress bar move without reloading.
    await page.goto(f"{api.url}/admin/queues/jobs/{watched}")
    bar = page.locator("#job-progress")
    await expect(bar).to_have_attribute("style", re.compile(r"width: ?10%"), timeout=15_000)
    await expect(page.locator("#job-state")).to_have_text("active")
    await expect(bar).to_have_attribute("style", re.compile(r"width: ?100%"), timeout=15_000)
    await expect(page.locator("#job-state")).to_have_text("completed")
    await expect(page.locator("#job-image")).to_be_visible()

    # Open the failed job and retry it by hand.
    await page.goto(f"{api.url}/admin/queues/jobs?state=failed")
    await page.click(f"text={failing}")
    await expect(page.locator("#job-error")).to_contain_text("HTTP 400")
    await page.click("button:has-text('Retry')")
    await expect(page.locator(".notice")).to_contain_text("Sent back to waiting")

    async def retried() -> bool:
        return (await ledger.get_job(failing)).state == JobState.COMPLETED

    await wait_until(retried, 20, "the retried job to complete")
    await expect(page.locator("#job-state")).to_have_text("completed", timeout=10_000)
    assert (await ledger.get_job(other)).state == JobState.COMPLETED
