"""``webhook`` and ``webhookEvents`` on the create routes: checked before anything is
stored; the deliveries and endpoints routes show a key's owner their own only."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from imagequeue_api.apikeys import ApiKeyStore
from imagequeue_api.app import create_app
from imagequeue_common.contracts import DELIVER_WEBHOOK_TASK
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings, replace
from imagequeue_common.webhook_ledger import AttemptRecord, WebhookLedger, delivery_settings
from imagequeue_common.webhooks import Delivery
from tests.api.conftest import MakeKey

HOOK = "https://hooks.example.com/imagequeue"


def character(**extra: Any) -> dict[str, Any]:
    return {"name": "Ann", "personality": {"poseId": "pose-standing"}, **extra}


@pytest.mark.parametrize(
    ("extra", "status", "path", "says"),
    [  # malformed (the body's schema says so): 400
        ({"webhook": "ftp://hooks.example.com/x"}, 400, "webhook", "regex"),
        ({"webhook": "https://user:pw@hooks.example.com/x"}, 400, "webhook", "regex"),
        ({"webhook": "https://hooks.example.com/a b"}, 400, "webhook", "regex"),
        ({"webhook": "https://hooks.example.com/a\x01"}, 400, "webhook", "regex"),
        ({"webhook": "https://hooks.example.com/#frag"}, 400, "webhook", "regex"),
        ({"webhook": "https://" + "a" * 2050}, 400, "webhook", "2048"),
        ({"webhook": HOOK, "webhookEvents": ["finished"]}, 400, "webhookEvents", "finished"),
        ({"webhook": HOOK, "webhookEvents": []}, 400, "webhookEvents", ""),
        # well-formed, refused by the settings or by the rest of the body: 422
        ({"webhook": "http://hooks.example.com/x"}, 422, "webhook", "https:// URL"),
        ({"webhook": "https://10.1.2.3/x"}, 422, "webhook", "not a public one"),
        ({"webhook": "https://[::1]:8443/x"}, 422, "webhook", "not a public one"),
        ({"webhook": "https://169.254.169.254/latest"}, 422, "webhook", "not a public one"),
        ({"webhook": "https://hooks.example.com:99999/x"}, 422, "webhook", "bad port"),
        ({"webhookEvents": ["completed"]}, 422, "webhookEvents", "needs a webhook"),
    ],
)
async def test_a_bad_webhook_is_refused_and_stores_nothing(
    client: AsyncTestClient[Litestar], make_key: MakeKey, ledger: JobLedger,
    extra: dict[str, Any], status: int, path: str, says: str,
) -> None:  # fmt: skip
    headers = await make_key("ann")
    made = await client.post("/api/v1/characters", json=character(), headers=headers)
    mine = made.json()["data"]["_id"]
    for route, body in (("/api/v1/characters", character(**extra)),
                        ("/api/v1/generations", {"characterId": mine, **extra})):  # fmt: skip
        answer = await client.post(route, json=body, headers=headers)
        assert answer.status_code == status, answer.text
        problem = answer.json()
        assert says in problem["detail"] or any(says in e["message"] for e in problem["errors"])
        assert any(path in e["path"] for e in problem["errors"]), problem
    listed = await client.get("/api/v1/characters", headers=headers)
    assert listed.json()["data"]["total"] == 1
    assert (await ledger.stats()).waiting == 1  # the first character's job only


async def test_a_good_webhook_rides_on_the_job(
    client: AsyncTestClient[Litestar], make_key: MakeKey, ledger: JobLedger, redis: Redis,
) -> None:  # fmt: skip
    headers = await make_key("ann")
    answer = await client.post("/api/v1/characters", headers=headers, json=character(
        webhook=HOOK, webhookEvents=["started", "completed", "started"]))  # fmt: skip
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["data"]["imageJob"]["id"]
    assert await redis.hget(ledger.keys.job(job_id), "hk") == "cs"
    plain = await client.post("/api/v1/characters", headers=headers, json=character(webhook=HOOK))
    default = plain.json()["data"]["imageJob"]["id"]
    assert await redis.hget(ledger.keys.job(default), "hk") == "cefx"  # the final events
    none = await client.post("/api/v1/characters", headers=headers, json=character())
    assert await redis.hget(ledger.keys.job(none.json()["data"]["imageJob"]["id"]), "hk") is None


async def test_http_and_private_hosts_only_where_the_settings_allow(
    api_settings: Settings, redis: Redis, make_key: MakeKey,
) -> None:  # fmt: skip
    del redis
    app = create_app(replace(api_settings, webhook_allow_http=True,
                             webhook_private_hosts="10.0.0.0/8"))  # fmt: skip
    headers = await make_key("ann")
    async with AsyncTestClient(app, raise_server_exceptions=False) as local:
        ok = await local.post("/api/v1/characters", headers=headers,
                              json=character(webhook="http://10.1.2.3:8080/hook"))  # fmt: skip
        assert ok.status_code == 201, ok.text
        no = await local.post("/api/v1/characters", headers=headers,
                              json=character(webhook="http://192.168.1.2/hook"))  # fmt: skip
        assert no.status_code == 422


async def test_a_key_without_a_secret_or_a_disabled_endpoint_is_a_409(
    client: AsyncTestClient[Litestar], make_key: MakeKey, redis: Redis,
    api_settings: Settings,
) -> None:  # fmt: skip
    store = ApiKeyStore(redis, api_settings.queue_name)
    key, record = await store.create("ann", "regular")
    headers = {"Authorization": f"Bearer {key}"}
    hooks = WebhookLedger(redis, api_settings.webhook_queue)
    assert not await hooks.endpoint_failed("ann", HOOK, "HTTP 500: down", 10, now=1000)
    assert await hooks.endpoint_failed("ann", HOOK, "HTTP 503: still down", 10, now=1011)
    refused = await client.post("/api/v1/characters", headers=headers, json=character(webhook=HOOK))
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("webhook-disabled")
    assert "HTTP 503: still down" in refused.json()["detail"]
    listed = (await client.get("/api/v1/webhooks/endpoints", headers=headers)).json()["data"]
    assert [(e["url"], e["disabledWhy"]) for e in listed] == [(HOOK, "HTTP 503: still down")]
    other = await make_key("bob")  # bob's endpoint of the same URL is his own
    assert (await client.get("/api/v1/webhooks/endpoints", headers=other)).json()["data"] == []
    assert (await client.post("/api/v1/characters", headers=other,
                              json=character(webhook=HOOK))).status_code == 201  # fmt: skip
    enabled = await client.post("/api/v1/webhooks/endpoints/enable", headers=headers,
                                json={"url": HOOK})  # fmt: skip
    assert enabled.status_code == 200
    assert enabled.json()["data"]["disabledAt"] is None
    again = await client.post("/api/v1/webhooks/endpoints/enable", headers=headers,
                              json={"url": HOOK})  # fmt: skip
    assert again.status_code == 200  # harmless twice
    assert (await client.post("/api/v1/characters", headers=headers,
                              json=character(webhook=HOOK))).status_code == 201  # fmt: skip
    await store.webhook_secrets.delete(record.key_id)
    bare = await client.post("/api/v1/characters", headers=headers, json=character(webhook=HOOK))
    assert bare.status_code == 409
    assert bare.json()["type"].endswith("no-webhook-secret")


async def test_deliveries_are_listed_to_their_owner_only(
    client: AsyncTestClient[Litestar], make_key: MakeKey, redis: Redis,
    api_settings: Settings,
) -> None:  # fmt: skip
    ann, bob = await make_key("ann"), await make_key("bob")
    made = await client.post("/api/v1/characters", headers=ann, json=character(webhook=HOOK))
    job_id = made.json()["data"]["imageJob"]["id"]
    queue = EngineBroker(delivery_settings(api_settings), api_settings.redis_url_or_default)
    await queue.startup()
    try:
        delivery = Delivery(msg_id="msg_1-0", job_id=job_id, event="completed", url=HOOK,
                            key_id="k", owner="ann", body="{}")  # fmt: skip
        await queue.submit(DELIVER_WEBHOOK_TASK, delivery.msg_id, [delivery],
                           {"user_id": "ann", "ref": job_id})  # fmt: skip
    finally:
        await queue.shutdown()
    record = AttemptRecord(at=1.0, attempt=1, outcome="retry", status=500, detail="down",
                           elapsed_ms=12)  # fmt: skip
    await WebhookLedger(redis, api_settings.webhook_queue).record("msg_1-0", record)
    mine = (await client.get("/api/v1/webhooks/deliveries", headers=ann)).json()["data"]
    assert [(d["id"], d["event"], d["state"], d["lastStatus"]) for d in mine] == [
        ("msg_1-0", "completed", "pending", 500)]  # fmt: skip
    assert mine[0]["attemptLog"][0]["detail"] == "down"
    by_job = await client.get(f"/api/v1/webhooks/deliveries?jobId={job_id}", headers=ann)
    assert [d["id"] for d in by_job.json()["data"]] == ["msg_1-0"]
    assert (await client.get("/api/v1/webhooks/deliveries", headers=bob)).json()["data"] == []
    theirs = await client.get(f"/api/v1/webhooks/deliveries?jobId={job_id}", headers=bob)
    assert theirs.status_code == 404


async def test_metrics_count_deliveries_by_state_and_attempts_by_outcome(
    api_settings: Settings, redis: Redis,
) -> None:  # fmt: skip
    settings = replace(api_settings, metrics_token="m" * 32)
    log = WebhookLedger(redis, settings.webhook_queue)
    for outcome in ("delivered", "delivered", "retry", "gone"):
        await log.record("msg_9-0", AttemptRecord(1.0, 1, outcome, 200, "", 5))
    await log.count_dead()
    queue = EngineBroker(delivery_settings(settings), settings.redis_url_or_default)
    await queue.startup()
    try:
        delivery = Delivery(msg_id="msg_9-0", job_id="j", event="completed", url=HOOK,
                            key_id="k", owner="ann", body="{}")  # fmt: skip
        await queue.submit(DELIVER_WEBHOOK_TASK, delivery.msg_id, [delivery], {})
    finally:
        await queue.shutdown()
    async with AsyncTestClient(create_app(settings)) as client:
        text = (await client.get("/metrics", headers={"Authorization": f"Bearer {'m' * 32}"})).text
    assert 'imagequeue_webhook_deliveries{state="waiting"} 1' in text
    assert 'imagequeue_webhook_attempts_total{outcome="delivered"} 2' in text
    assert 'imagequeue_webhook_attempts_total{outcome="retry"} 1' in text
    assert 'imagequeue_webhook_attempts_total{outcome="gone"} 1' in text
    assert 'imagequeue_webhook_attempts_total{outcome="dead"} 1' in text
    assert 'imagequeue_webhook_attempts_total{outcome="refused"} 0' in text
