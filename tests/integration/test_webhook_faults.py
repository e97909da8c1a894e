"""Webhook deliveries through faults: the webhook worker SIGKILLed with deliveries in flight,
then Redis killed and restarted from its append-only file. Every job's ``completed`` still
arrives, under one ``webhook-id`` (a receiver may see it twice: at least once), never before
its ``started``."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import CharacterRef, JobState, PoseRef
from imagequeue_common.embedded_redis import EmbeddedRedis
from imagequeue_common.generation import add_image_generation_job
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings
from imagequeue_common.store import NewCharacter, open_store
from imagequeue_common.webhook_secrets import WebhookSecrets
from tests.support.procs import WorkerProcess, wait_until, worker_env
from tests.support.receiver import Receiver
from tests.support.stub import StubServer

pytestmark = pytest.mark.slow
JOBS = 16


def hook_worker(settings: Settings, started: list[WorkerProcess], tmp: Path) -> WorkerProcess:
    env = worker_env(settings, webhook_retry_schedule_s="0.2,0.5,1,1,1,1",
                     webhook_private_hosts="127.0.0.1", webhook_allow_http="true",
                     webhook_timeout_s=2, webhook_concurrency=4)  # fmt: skip
    proc = WorkerProcess(env, argv=["-m", "imagequeue_worker", "webhooks"],
                         log_dir=tmp / "logs").start()  # fmt: skip
    started.append(proc)
    return proc


def assert_heard_once_in_order(receiver: Receiver, jobs: list[str]) -> None:
    """Every job's completed arrived under one webhook-id, after its started."""
    by_event: dict[tuple[str, str], set[str]] = {}
    first: dict[tuple[str, str], int] = {}
    for n, r in enumerate(receiver.seen):
        assert r.verified
        key = (str(r.body["id"]), str(r.body["event"]))
        by_event.setdefault(key, set()).add(r.msg_id)
        first.setdefault(key, n)
    completed = [k for k in by_event if k[1] == "completed"]
    assert sorted(k[0] for k in completed) == sorted(jobs)  # none lost
    # One webhook-id per job's completed: a repeat is the same delivery again.
    assert all(len(by_event[k]) == 1 for k in completed), by_event
    for job_id in jobs:
        started = first.get((job_id, "started"))
        assert started is not None
        assert started < first[(job_id, "completed")]


async def queue_jobs(api: EngineBroker, settings: Settings, url: str) -> list[str]:
    """``JOBS`` characters of ann's, each image job with a webhook for started, completed."""
    store = await open_store(settings.database_url)
    try:
        pose = (await store.list_poses())[0]
        jobs = []
        for n in range(JOBS):
            made = await store.create_character(
                NewCharacter(user_id="ann", name=f"c{n}", pose_id=pose.id))  # fmt: skip
            hook = {"webhook": url, "webhook_events": "started,completed", "webhook_key": "k1"}
            jobs.append(await add_image_generation_job(
                api, CharacterRef(id=made.id, name=made.name),
                PoseRef(id=pose.id, name=pose.name), "ann", webhook=hook))  # fmt: skip
        return jobs
    finally:
        await store.close()


async def test_deliveries_survive_a_killed_worker_and_a_redis_restart(
    tmp_path: Path, queue_name: str, stub_ai: StubServer, workers: list[WorkerProcess],
) -> None:  # fmt: skip
    server = EmbeddedRedis(tmp_path / "redis", persistent=True)
    url = server.start()
    settings = Settings(
        redis_url=url, queue_name=queue_name, rate_limit_max=0, lease_ms=1500,
        redis_retry_ms=100, worker_concurrency=4, ai_generation_api_url=f"{stub_ai.url}/generate",
        database_url=f"sqlite:///{tmp_path}/db.sqlite", assets_dir=str(tmp_path / "assets"),
    )  # fmt: skip
    stub_ai.configure(latency_min_s=0.2, latency_max_s=0.4, time_scale=1.0)
    redis = Redis.from_url(url, decode_responses=True)
    secret = await WebhookSecrets(redis, queue_name).create("k1")
    api = EngineBroker(settings, url)
    await api.startup()
    receiver = Receiver(secret, hang_s=0.6)
    receiver.answers = ["hang"] * (2 * JOBS)  # every delivery takes 0.6 s: some in flight
    try:
        with receiver:
            workers.append(WorkerProcess(worker_env(settings), log_dir=tmp_path / "logs").start())
            hooks = hook_worker(settings, workers, tmp_path)
            jobs = await queue_jobs(api, settings, receiver.url)

            async def some_arrived() -> bool:
                return len(receiver.seen) >= 4

            await wait_until(some_arrived, 30, "the first deliveries")
            hooks.kill()  # deliveries in flight, outbox entries read and not yet acked
            workers.remove(hooks)
            hook_worker(settings, workers, tmp_path)
            await redis.aclose()
            await api.shutdown()
            server.kill()
            server = EmbeddedRedis(tmp_path / "redis", persistent=True, port=server.port)
            server.start()
            redis = Redis.from_url(url, decode_responses=True)
            api = EngineBroker(settings, url)
            await api.startup()
            ledger = JobLedger(redis, settings)

            async def all_completed_heard() -> bool:
                heard = {r.body["id"] for r in receiver.delivered()
                         if r.body["event"] == "completed"}  # fmt: skip
                return heard >= set(jobs)

            await wait_until(all_completed_heard, 90, "every job's completed to arrive")
            states = {(await ledger.get_job(j)).state for j in jobs}
            assert states == {JobState.COMPLETED}
            assert_heard_once_in_order(receiver, jobs)
    finally:
        await api.shutdown()
        await redis.aclose()
        for proc in workers:
            proc.stop()
        workers.clear()
        server.stop()
    for log in (tmp_path / "logs").glob("*.log"):  # an outage is a line, never a crash
        assert "Traceback" not in log.read_text(errors="replace"), log
