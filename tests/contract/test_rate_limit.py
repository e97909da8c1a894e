"""Which tasks the rate limit holds: a team's plain ``@broker.task`` starts whenever a slot
is free (the limit is the GPU side's, not theirs); a task labelled ``rate_limited=True``
waits for it, as ``generate_image`` does."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings, replace
from tests.contract.conftest import CLIS
from tests.contract.test_acks import kicker, start
from tests.support.procs import WorkerProcess

pytestmark = pytest.mark.slow


async def test_plain_tasks_pass_the_limit_that_holds_rate_limited_ones(
    settings: Settings, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    limited = replace(settings, rate_limit_max=1, rate_limit_duration_ms=60_000)
    start(workers, limited, tmp_path, CLIS["taskiq"])
    client = EngineBroker(limited, limited.redis_url_or_default)
    await client.startup()
    try:
        # The decorator's label, as `add_under_the_limit.kiq` sends it: the limit is decided
        # when the job is queued, from the message's labels.
        first = await kicker(client, "add_under_the_limit", rate_limited="True").kiq(1, 1)
        second = await kicker(client, "add_under_the_limit", rate_limited="True").kiq(2, 2)
        plain = [await kicker(client, "add").kiq(i, 1) for i in range(5)]
        assert (await first.wait_result(timeout=30)).return_value == 2
        for i, task in enumerate(plain):  # behind the second in the queue, yet done
            assert (await task.wait_result(timeout=30)).return_value == i + 1
        # One start a minute: the second limited one waits for the window, first in line.
        job = await client.ledger.get_job(second.task_id)
        assert job.state is JobState.WAITING
        assert await client.ledger.position(second.task_id) == 0
        assert (await client.ledger.metrics()).rate_limited >= 1
    finally:
        await client.shutdown()
