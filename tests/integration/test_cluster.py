"""The stack on a real Redis Cluster (three primaries on loopback): several queues spread
over the primaries, each queue in one slot, a character made into an image end to end
through ``REDIS_URL=redis+cluster://…``, and a failover under load — the queue's primary
SIGKILLed while clients post and workers run, its replica taking over — with no accepted
job lost, no worker dead and only 201 or 503 answered. (``just test-cluster`` runs the
engine's own tests on such a cluster too.)"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings
from tests.integration.test_workers import kick
from tests.support.api import ApiServer
from tests.support.clients import KEY
from tests.support.cluster import ClusterSet
from tests.support.failover import failover_under_load
from tests.support.procs import WorkerProcess, wait_until, worker_env
from tests.support.stub import StubServer
from tests.support.tasks import RECORD, register_test_tasks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSet]:
    setup = ClusterSet(tmp_path_factory.mktemp("cluster"))
    yield setup
    setup.stop()


async def test_queues_spread_over_the_primaries(cluster: ClusterSet) -> None:
    nodes = set()
    for i in range(12):
        settings = Settings(redis_url=cluster.url, queue_name=f"spread-{i}", rate_limit_max=0)
        broker = EngineBroker(settings, cluster.url)
        register_test_tasks(broker)
        await broker.startup()
        try:
            job_id = await kick(broker, RECORD)
            assert (await broker.ledger.get_job(job_id)).state == JobState.WAITING
            key = broker.ledger.keys.job(job_id)
            for node in cluster.nodes:
                with node.client() as client, contextlib.suppress(redis.ResponseError):
                    if client.exists(key):  # another node answers MOVED
                        nodes.add(node.port)
        finally:
            await broker.shutdown()
    assert len(nodes) == 3  # twelve queues, every primary holds some


async def test_a_character_becomes_an_image_on_a_cluster(
    cluster: ClusterSet, queue_name: str, stub_ai: StubServer, tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:  # fmt: skip
    settings = Settings(
        redis_url=cluster.url, queue_name=queue_name, rate_limit_max=5,
        worker_concurrency=3, ai_generation_api_url=f"{stub_ai.url}/generate",
        database_url=f"sqlite:///{tmp_path}/db.sqlite", assets_dir=str(tmp_path / "assets"),
    )  # fmt: skip
    env = worker_env(settings, api_dev_key=KEY)
    api = ApiServer(env, tmp_path / "api.log").start()
    workers.append(WorkerProcess(env, log_dir=tmp_path / "logs").start())
    redis = command_client(cluster.url)
    ledger = JobLedger(redis, settings)
    try:
        headers = {"Authorization": f"Bearer {KEY}"}
        async with httpx.AsyncClient(base_url=api.url, headers=headers) as http:
            jobs = []
            for i in range(6):
                body = {"name": f"Cluster {i}", "personality": {"poseId": "pose-standing"}}
                answer = await http.post("/api/v1/characters", json=body)
                assert answer.status_code == 201, answer.text
                jobs.append(answer.json()["data"]["imageJob"]["id"])

            async def done() -> bool:
                states = {(await ledger.get_job(j)).state for j in jobs}
                return states == {JobState.COMPLETED}

            await wait_until(done, 60, "six images on the cluster")
            view = await http.get(f"/api/v1/generations/{jobs[0]}")
            assert view.status_code == 200
            assert view.json()["data"]["state"] == "completed"
            assert (await http.get("/api/v1/queue/stats")).status_code == 200
    finally:
        await redis.aclose()
        api.stop()
    for log in [*(tmp_path / "logs").glob("*.log"), tmp_path / "api.log"]:
        assert "Traceback" not in log.read_text(errors="replace"), log


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[ClusterSet]:
    setup = ClusterSet(tmp_path / "replicated", replicas=1)
    yield setup
    setup.stop()


async def test_a_failover_under_load_loses_no_accepted_job(
    replicated: ClusterSet, queue_name: str, stub_ai: StubServer, tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:  # fmt: skip
    def kill_primary(ledger: JobLedger) -> Callable[[], Awaitable[bool]]:
        old = replicated.primary_of(ledger.keys.waiting)
        old.kill()

        async def promoted() -> bool:  # the queue's slot has another primary
            return replicated.primary_of(ledger.keys.waiting) is not old

        return promoted

    await failover_under_load(replicated.url, queue_name, stub_ai, tmp_path, workers,
                              kill_primary)  # fmt: skip


async def test_a_transaction_after_a_failover_fails_once_then_reaches_the_new_primary(
    replicated: ClusterSet, queue_name: str
) -> None:
    settings = Settings(redis_url=replicated.url, queue_name=queue_name, rate_limit_max=0)
    broker = EngineBroker(settings, replicated.url)
    register_test_tasks(broker)
    await broker.startup()
    idle = command_client(replicated.url)  # knows the slots, says nothing during the failover
    try:
        job_id = await kick(broker, RECORD)
        ledger = JobLedger(idle, settings)
        assert (await ledger.get_job(job_id)).state == JobState.WAITING  # MULTI/EXEC
        old = replicated.primary_of(ledger.keys.waiting)
        old.kill()

        async def promoted() -> bool:
            return replicated.primary_of(ledger.keys.waiting) is not old

        await wait_until(promoted, 30, "the replica to take over the queue's slot")
        with pytest.raises(redis.ConnectionError):  # its connection was to the dead node
            await ledger.get_job(job_id)
        # (the replica had it: the enqueue waited for it, the default with a replica)
        assert (await ledger.get_job(job_id)).state == JobState.WAITING
    finally:
        await idle.aclose()
        await broker.shutdown()
