"""Fixtures of the taskiq contract tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings
from tests.contract.test_acks import MODULE, start
from tests.support.procs import WorkerProcess

CLIS = {
    "taskiq": ["-m", "taskiq", "worker", f"{MODULE}:broker"],
    "imagequeue": ["-m", "imagequeue_worker", "run", "--broker", f"{MODULE}:broker"],
}
"""The two ways to run a team's own tasks: taskiq's CLI and imagequeue's."""


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[EngineBroker]:
    """The client side (an API process's view): kicks by task name, reads results."""
    broker = EngineBroker(settings, settings.redis_url_or_default)
    await broker.startup()
    yield broker
    await broker.shutdown()


@pytest.fixture(params=sorted(CLIS))
def worker(
    request: pytest.FixtureRequest, settings: Settings, workers: list[WorkerProcess],
    tmp_path: Path,
) -> str:  # fmt: skip
    """A worker for the user's tasks, once per CLI, for the test's queue."""
    start(workers, settings, tmp_path, CLIS[request.param])
    return str(request.param)
