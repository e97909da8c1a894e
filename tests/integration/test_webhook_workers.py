"""Webhooks end to end: real image and webhook worker processes, the stub AI server, and
receivers on loopback that verify every request with the ``standardwebhooks`` package."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import CharacterRef, JobState, PoseRef
from imagequeue_common.generation import add_image_generation_job
from imagequeue_common.queue.admin import QueueAdmin
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings, replace
from imagequeue_common.store import CharacterStore, NewCharacter
from imagequeue_common.webhook_ledger import WebhookLedger, delivery_settings
from imagequeue_common.webhook_secrets import WebhookSecrets
from tests.support.procs import WorkerProcess, start_workers, wait_until, worker_env
from tests.support.receiver import Receiver
from tests.support.stub import StubServer

pytestmark = pytest.mark.slow
KEY = "key-hooks"
SCHEDULE = "0.3,0.6,0.9"


@pytest.fixture
def pipe_settings(settings: Settings, stub_ai: StubServer, tmp_path: Path) -> Settings:
    stub_ai.configure(time_scale=0.01)  # 0.3-0.6 s per image
    return replace(
        settings, ai_generation_api_url=f"{stub_ai.url}/generate",
        database_url=f"sqlite:///{tmp_path}/imagequeue.db", assets_dir=str(tmp_path / "assets"),
        webhook_retry_schedule_s=SCHEDULE, webhook_private_hosts="127.0.0.1",
        webhook_allow_http=True, webhook_timeout_s=1.0,
    )  # fmt: skip


@pytest.fixture
async def secret(pipe_settings: Settings, redis: Redis) -> str:
    return await WebhookSecrets(redis, pipe_settings.queue_name).create(KEY)


@pytest.fixture
def receiver(secret: str) -> Iterator[Receiver]:
    with Receiver(secret, hang_s=2.0) as server:
        yield server


def start_webhook_workers(started: list[WorkerProcess], settings: Settings,
                          **overrides: object) -> WorkerProcess:  # fmt: skip
    hooks: dict[str, object] = {
        "webhook_retry_schedule_s": settings.webhook_retry_schedule_s,
        "webhook_private_hosts": settings.webhook_private_hosts,
        "webhook_allow_http": "true", "webhook_timeout_s": settings.webhook_timeout_s,
    }  # fmt: skip
    env = worker_env(settings, **{**hooks, **overrides})
    proc = WorkerProcess(env, argv=["-m", "imagequeue_worker", "webhooks"]).start()
    started.append(proc)
    return proc


async def one_image(client: EngineBroker, store: CharacterStore, url: str,
                    events: str = "started,completed") -> str:  # fmt: skip
    pose = (await store.list_poses())[0]
    made = await store.create_character(NewCharacter(user_id="ann", name="Ann", pose_id=pose.id))
    hook = {"webhook": url, "webhook_events": events, "webhook_key": KEY}
    return await add_image_generation_job(
        client, CharacterRef(id=made.id, name=made.name), PoseRef(id=pose.id, name=pose.name),
        "ann", webhook=hook,
    )  # fmt: skip


async def deliveries_settled(redis: Redis, settings: Settings, count: int) -> bool:
    ledger = JobLedger(redis, delivery_settings(settings))
    stats = await ledger.stats()
    return stats.completed + stats.failed >= count and stats.waiting + stats.delayed == 0


async def test_started_then_completed_signed_with_the_job_as_the_api_shows_it(
    pipe_settings: Settings, client: EngineBroker, store: CharacterStore, redis: Redis,
    receiver: Receiver, workers: list[WorkerProcess],
) -> None:  # fmt: skip
    start_workers(workers, pipe_settings)
    start_webhook_workers(workers, pipe_settings)
    job_id = await one_image(client, store, receiver.url)

    async def both() -> bool:
        return len(receiver.delivered()) >= 2

    await wait_until(both, 30, "started and completed to arrive")
    got = receiver.delivered()
    assert [r.body["event"] for r in got] == ["started", "completed"]
    assert all(r.verified for r in got)
    assert len({r.msg_id for r in got}) == 2
    done = got[1].body
    job = await client.ledger.get_job(job_id)
    assert job.state == JobState.COMPLETED
    assert done["id"] == job_id
    assert done["state"] == "completed"
    assert done["characterId"] == job.ref
    assert done["imageUrl"]
    assert done["imageUrl"] == done["resultUrl"]
    assert got[0].body["state"] in ("active", "completed")
    assert got[0].body["imageUrl"] is None or got[0].body["state"] == "completed"


async def test_failures_are_retried_on_the_schedule_with_one_webhook_id_and_order_kept(
    pipe_settings: Settings, client: EngineBroker, store: CharacterStore, redis: Redis,
    receiver: Receiver, workers: list[WorkerProcess],
) -> None:  # fmt: skip
    receiver.by_event["started"] = ["fail", "fail"]  # two 500s, then 204
    start_workers(workers, pipe_settings)
    start_webhook_workers(workers, pipe_settings)
    await one_image(client, store, receiver.url)

    async def both() -> bool:
        return len(receiver.delivered()) >= 2

    await wait_until(both, 30, "both events to be delivered")
    seen = receiver.seen
    events = [r.body["event"] for r in seen]
    assert events == ["started", "started", "started", "completed"]
    assert len({r.msg_id for r in seen[:3]}) == 1
    assert seen[3].msg_id != seen[0].msg_id
    assert all(r.verified for r in seen)
    gaps = [b.at - a.at for a, b in itertools.pairwise(seen)]
    assert 0.3 <= gaps[0] < 3, gaps  # the schedule: not sooner, nor much later
    assert 0.6 <= gaps[1] < 3.3, gaps
    log = await WebhookLedger(redis, pipe_settings.webhook_queue).attempts([seen[0].msg_id])
    assert [(a.outcome, a.status) for a in log[seen[0].msg_id]] == [
        ("retry", 500), ("retry", 500), ("delivered", 204)]  # fmt: skip


async def test_gone_stops_and_exhausted_retries_dead_letter_with_the_answer(
    pipe_settings: Settings, client: EngineBroker, store: CharacterStore, redis: Redis,
    receiver: Receiver, workers: list[WorkerProcess],
) -> None:  # fmt: skip
    receiver.by_event["started"] = ["gone"]
    receiver.by_event["completed"] = ["fail"] * 10
    start_workers(workers, pipe_settings)
    start_webhook_workers(workers, pipe_settings)
    await one_image(client, store, receiver.url)
    await wait_until(lambda: deliveries_settled(redis, pipe_settings, 2), 30,
                     "both deliveries to be dead-lettered")  # fmt: skip
    assert receiver.events() == [("started", receiver.seen[0].msg_id, 410)] + [
        ("completed", receiver.seen[1].msg_id, 500)] * 4  # fmt: skip
    hooks = JobLedger(redis, delivery_settings(pipe_settings))
    gone = await hooks.get_job(receiver.seen[0].msg_id)
    dead = await hooks.get_job(receiver.seen[1].msg_id)
    assert gone.state == dead.state == JobState.FAILED
    assert gone.attempts == 1
    assert "HTTP 410" in (gone.error or "")
    assert dead.attempts == 4
    assert "HTTP 500: receiver is down" in (dead.error or "")
    assert "gave up after 4 attempts" in (dead.error or "")


async def test_refused_addresses_and_redirects_never_reach_anyone(
    pipe_settings: Settings, client: EngineBroker, store: CharacterStore, redis: Redis,
    receiver: Receiver, secret: str, workers: list[WorkerProcess],
) -> None:  # fmt: skip
    with Receiver(secret) as target:
        receiver.answers = ["redirect"] * 10
        receiver.redirect_to = target.url
        start_workers(workers, pipe_settings)
        start_webhook_workers(workers, pipe_settings, webhook_private_hosts="")
        await one_image(client, store, receiver.url, "completed")  # 127.0.0.1: refused now
        await wait_until(lambda: deliveries_settled(redis, pipe_settings, 1), 30,
                         "the delivery to be refused")  # fmt: skip
        assert receiver.seen == []
        hooks = JobLedger(redis, delivery_settings(pipe_settings))
        refused = (await QueueAdmin(hooks).search("ann"))[0]
        assert refused.attempts == 1
        assert "not a public address" in (refused.error or "")
        # Allowed now, the receiver answers every attempt with a redirect: not followed.
        workers.pop().stop()
        start_webhook_workers(workers, pipe_settings)
        await one_image(client, store, receiver.url, "completed")
        await wait_until(lambda: deliveries_settled(redis, pipe_settings, 2), 30,
                         "the redirected delivery to be dead-lettered")  # fmt: skip
        assert [status for _, _, status in receiver.events()] == [302] * 4
        assert target.seen == []


async def test_a_receiver_that_hangs_times_out_and_is_tried_again(
    pipe_settings: Settings, client: EngineBroker, store: CharacterStore, redis: Redis,
    receiver: Receiver, workers: list[WorkerProcess],
) -> None:  # fmt: skip
    receiver.by_event["completed"] = ["hang"]
    start_workers(workers, pipe_settings)
    start_webhook_workers(workers, pipe_settings)
    await one_image(client, store, receiver.url, "completed")
    await wait_until(lambda: deliveries_settled(redis, pipe_settings, 1), 30,
                     "the delivery to succeed after a timeout")  # fmt: skip
    msg_id = receiver.seen[0].msg_id
    log = (await WebhookLedger(redis, pipe_settings.webhook_queue).attempts([msg_id]))[msg_id]
    assert [a.outcome for a in log] == ["retry", "delivered"]
    assert "timed out" in log[0].detail
    assert 900 <= log[0].elapsed_ms < 1900


async def test_an_endpoint_failing_long_enough_is_disabled_and_says_why(
    pipe_settings: Settings, client: EngineBroker, store: CharacterStore, redis: Redis,
    receiver: Receiver, workers: list[WorkerProcess],
) -> None:  # fmt: skip
    receiver.by_event["started"] = ["fail"] * 10  # attempts at 0, 0.3 and 0.9 s: failing
    start_workers(workers, pipe_settings)
    start_webhook_workers(workers, pipe_settings, webhook_disable_after_s=0.5)
    await one_image(client, store, receiver.url)
    await wait_until(lambda: deliveries_settled(redis, pipe_settings, 2), 30,
                     "both deliveries to end")  # fmt: skip
    # The third failure, 0.9 s after the first, disabled it: completed was never sent.
    assert receiver.events() == [("started", receiver.seen[0].msg_id, 500)] * 3
    ledger = WebhookLedger(redis, pipe_settings.webhook_queue)
    endpoint = await ledger.endpoint("ann", receiver.url)
    assert endpoint is not None
    assert endpoint.disabled_at is not None
    assert endpoint.disabled_why == "HTTP 500: receiver is down"
    hooks = QueueAdmin(JobLedger(redis, delivery_settings(pipe_settings)))
    dead = {j.error for j in await hooks.search("ann")}
    assert any("endpoint disabled: HTTP 500" in (e or "") for e in dead), dead


async def test_a_revoked_key_signs_nothing_more(
    pipe_settings: Settings, client: EngineBroker, store: CharacterStore, redis: Redis,
    receiver: Receiver, workers: list[WorkerProcess],
) -> None:  # fmt: skip
    await WebhookSecrets(redis, pipe_settings.queue_name).delete(KEY)  # the key was revoked
    start_workers(workers, pipe_settings)
    start_webhook_workers(workers, pipe_settings)
    await one_image(client, store, receiver.url, "completed")
    await wait_until(lambda: deliveries_settled(redis, pipe_settings, 1), 30,
                     "the delivery to be dead-lettered")  # fmt: skip
    assert receiver.seen == []  # nothing unsigned, nothing signed with a dead secret
    dead = (await QueueAdmin(JobLedger(redis, delivery_settings(pipe_settings))).search("ann"))[0]
    assert dead.state == JobState.FAILED
    assert "webhook secret is gone" in (dead.error or "")
