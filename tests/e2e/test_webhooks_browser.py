"""Webhook deliveries on the dashboard in a real headless Chromium: a running API, image and
webhook workers, the stub AI and a receiver on loopback. A delivery the receiver refused
with 410 is listed as failed with its status, sent again from the page, and then listed as
succeeded; the job's page shows its deliveries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings, replace
from imagequeue_common.webhook_ledger import delivery_settings
from imagequeue_common.webhook_secrets import WebhookSecrets
from tests.e2e.test_dashboard_browser import ADMIN, DEV_KEY, login, page
from tests.support.api import ApiServer
from tests.support.procs import WorkerProcess, start_workers, wait_until, worker_env
from tests.support.receiver import Receiver
from tests.support.stub import StubServer

__all__ = ["page"]  # a fixture, used by name
pytestmark = pytest.mark.slow
HOOKS = {"webhook_allow_http": "true", "webhook_private_hosts": "127.0.0.1"}


@pytest.fixture
def stack(settings: Settings, stub_ai: StubServer, tmp_path: Path) -> Settings:
    stub_ai.configure(time_scale=0.01)
    return replace(settings, ai_generation_api_url=f"{stub_ai.url}/generate",
                   database_url=f"sqlite:///{tmp_path}/db.sqlite",
                   assets_dir=str(tmp_path / "assets"))  # fmt: skip


@pytest.fixture
def api(stack: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    env = worker_env(stack, api_dev_key=DEV_KEY, admin_password=ADMIN[1], **HOOKS)
    server = ApiServer(env, tmp_path / "api.log").start()
    yield server
    server.stop()


async def test_a_failed_delivery_retried_from_the_dashboard(
    page: Page, api: ApiServer, stack: Settings, redis: Redis, workers: list[WorkerProcess],
) -> None:  # fmt: skip
    secret = await WebhookSecrets(redis, stack.queue_name).create("dev")  # API_DEV_KEY's id
    with Receiver(secret) as receiver:
        receiver.by_event["completed"] = ["gone"]  # once: the retry is answered 204
        start_workers(workers, stack)
        hooks = WorkerProcess(worker_env(stack, **HOOKS),
                              argv=["-m", "imagequeue_worker", "webhooks"]).start()  # fmt: skip
        workers.append(hooks)
        body = {"name": "Hooked", "personality": {"poseId": "pose-standing"},
                "webhook": receiver.url}  # fmt: skip
        async with httpx.AsyncClient(
            base_url=api.url, headers={"Authorization": f"Bearer {DEV_KEY}"}
        ) as client:
            made = (await client.post("/api/v1/characters", json=body)).raise_for_status()
        job_id = made.json()["data"]["imageJob"]["id"]
        deliveries = JobLedger(redis, delivery_settings(stack))

        async def refused() -> bool:
            return (await deliveries.stats()).failed == 1

        await wait_until(refused, 30, "the delivery to be refused with 410")
        await login(page, api)
        await page.click("header a:has-text('Webhooks')")
        await page.click("main a.btn:has-text('Failed')")
        row = page.locator("tbody tr").first
        await expect(row).to_contain_text("completed")
        await expect(row).to_contain_text("410")
        await expect(row).to_contain_text("HTTP 410")
        await row.locator("button:has-text('Retry')").click()  # the page asks; yes
        await expect(page.locator(".notice")).to_contain_text("sent back to waiting")

        async def delivered() -> bool:
            return len(receiver.delivered()) == 1

        await wait_until(delivered, 30, "the retried delivery to arrive")
        assert receiver.seen[0].msg_id == receiver.seen[1].msg_id  # the same webhook-id
        await page.click("main a.btn:has-text('Succeeded')")
        await expect(page.locator("tbody tr").first).to_contain_text("410 · 204")
        await page.goto(f"{api.url}/admin/queues/jobs/{job_id}")
        await expect(page.locator("#job-deliveries")).to_contain_text("succeeded")
        assert (await JobLedger(redis, stack).get_job(job_id)).state == JobState.COMPLETED
