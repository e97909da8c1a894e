"""The dashboard's webhook deliveries: pending, succeeded and failed with their attempts and
status codes, a failed one sent again, a job's deliveries on its page; viewers see a
receiver's host, not its path."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import DELIVER_WEBHOOK_TASK, JobState
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.settings import Settings
from imagequeue_common.webhook_ledger import AttemptRecord, WebhookLedger, delivery_settings
from imagequeue_common.webhooks import Delivery
from tests.api.test_dashboard import ADMIN, BASE, VIEWER, Client, dash, dash_settings, login, queue

__all__ = ["dash", "dash_settings"]  # fixtures, used by name
HOOK = "https://hooks.example.com/secret-token-path"


@pytest.fixture
async def hooks(dash_settings: Settings) -> AsyncIterator[EngineBroker]:
    broker = EngineBroker(delivery_settings(dash_settings), dash_settings.redis_url_or_default)
    await broker.startup()
    yield broker
    await broker.shutdown()


async def deliver(hooks: EngineBroker, msg_id: str, job_id: str, event: str) -> None:
    delivery = Delivery(msg_id=msg_id, job_id=job_id, event=event, url=HOOK, key_id="k",
                        owner="alice", body="{}")  # fmt: skip
    await hooks.submit(DELIVER_WEBHOOK_TASK, msg_id, [delivery], {"user_id": "alice",
                                                                  "ref": job_id})  # fmt: skip


async def test_deliveries_listed_retried_and_on_the_job_page(
    dash: Client, broker: EngineBroker, hooks: EngineBroker, redis: Redis,
    dash_settings: Settings,
) -> None:  # fmt: skip
    (job_id,) = await queue(broker, 1)
    for n, event in enumerate(("started", "completed", "progress")):
        await deliver(hooks, f"msg_{n}-0", job_id, event)
    ledger = JobLedger(redis, delivery_settings(dash_settings))
    claimed = (await ledger.claim("w", 2)).jobs
    done, dead = sorted(claimed, key=lambda c: c.job_id)
    await ledger.finish([FinishOp(done.job_id, done.token, "completed", "{}"),
                         FinishOp(dead.job_id, dead.token, "failed", "",
                                  "DeliveryFailedError: HTTP 503: busy")])  # fmt: skip
    log = WebhookLedger(redis, dash_settings.webhook_queue)
    await log.record(done.job_id, AttemptRecord(1.0, 1, "delivered", 204, "", 8))
    await log.record(dead.job_id, AttemptRecord(1.0, 1, "retry", 503, "busy", 9))
    await login(dash, ADMIN)
    pending = await dash.get(f"{BASE}/webhooks")
    assert pending.status_code == 200
    assert "msg_2-0" in pending.text
    assert "msg_0-0" not in pending.text
    assert "Pending · 1" in pending.text
    assert "Succeeded · 1" in pending.text
    assert "Failed · 1" in pending.text
    failed = await dash.get(f"{BASE}/webhooks?state=failed")
    assert "msg_1-0" in failed.text
    assert "HTTP 503: busy" in failed.text
    assert ">503<" in failed.text
    assert HOOK in failed.text  # an admin sees the whole URL
    page = await dash.get(f"{BASE}/jobs/{job_id}")
    assert "Webhook deliveries" in page.text
    assert "204" in page.text
    token = await login(dash, ADMIN)
    sent = await dash.post(f"{BASE}/webhooks/msg_1-0/retry", data={"csrf": token},
                           follow_redirects=False)  # fmt: skip
    assert sent.status_code == 303
    assert (await ledger.get_job("msg_1-0")).state == JobState.WAITING
    again = await dash.post(f"{BASE}/webhooks/msg_1-0/retry", data={"csrf": token})
    assert again.status_code == 409  # not failed any more
    await dash.post(f"{BASE}/logout", data={"csrf": token})
    await login(dash, VIEWER)
    seen = await dash.get(f"{BASE}/webhooks?state=succeeded")
    assert "https://hooks.example.com/…" in seen.text
    assert "secret-token-path" not in seen.text
    assert "/retry" not in seen.text
    refused = await dash.post(f"{BASE}/webhooks/msg_1-0/retry", data={"csrf": token})
    assert refused.status_code == 403
    assert (await dash.get(f"{BASE}/webhooks?state=bogus")).status_code == 404
