"""The stack on a real Sentinel setup (a primary, two replicas, three sentinels on loopback):
the engine through a ``redis+sentinel://`` URL, and a failover under load — the primary
SIGKILLed while clients post and workers run — with no accepted job lost, no worker dead,
and only 201 or 503 answered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings
from tests.integration.test_workers import kick
from tests.support.failover import failover_under_load
from tests.support.procs import WorkerProcess
from tests.support.sentinel import SentinelSet
from tests.support.stub import StubServer
from tests.support.tasks import RECORD, register_test_tasks

pytestmark = pytest.mark.slow


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSet]:
    setup = SentinelSet(tmp_path / "sentinel")
    yield setup
    setup.stop()


async def test_the_engine_runs_through_a_sentinel_url(
    sentinels: SentinelSet, queue_name: str
) -> None:
    settings = Settings(redis_url=sentinels.url, queue_name=queue_name, rate_limit_max=0)
    assert settings.replicas_ack == 1  # on by default with Sentinel
    broker = EngineBroker(settings, sentinels.url)
    register_test_tasks(broker)
    await broker.startup()
    try:
        job_id = await kick(broker, RECORD, value=7)
        assert (await broker.ledger.get_job(job_id)).state == JobState.WAITING
        # The enqueue waited for a replica: the job is there already.
        with sentinels.replicas[0].client() as replica:
            assert replica.exists(broker.ledger.keys.job(job_id))
    finally:
        await broker.shutdown()


async def test_a_failover_under_load_loses_no_accepted_job(
    sentinels: SentinelSet, queue_name: str, stub_ai: StubServer, tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:  # fmt: skip
    def kill_primary(ledger: JobLedger) -> Callable[[], Awaitable[bool]]:
        old = sentinels.master_port()
        sentinels.primary.kill()

        async def promoted() -> bool:  # the sentinels name another master
            return sentinels.master_port() not in (None, old)

        return promoted

    await failover_under_load(sentinels.url, queue_name, stub_ai, tmp_path, workers,
                              kill_primary)  # fmt: skip
