"""taskiq's acknowledgement contract on EngineBroker, for a team's own tasks.

Every ack moment taskiq offers — worker-wide (``taskiq worker --ack-type …``) or per task
(the ``ack_type`` label) — records a run that returned as completed with its value; a
message acked by hand is the same; a run that ended without an ack is delivered again,
like a dead worker's job, within a lease period and a heartbeat, and dead-lettered past
``STALL_LIMIT`` (it never stays ``active``). Real worker processes (taskiq's own CLI and
``imagequeue-worker run``) on real Redis; the client side is taskiq's kicker and
``wait_result``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis
from taskiq.kicker import AsyncKicker

from imagequeue_common.contracts import JobState
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.jobs import Job
from imagequeue_common.settings import Settings, replace
from tests.support.procs import WorkerProcess, wait_until, worker_env

pytestmark = pytest.mark.slow

MODULE = "tests.contract.user_tasks"


def start(workers: list[WorkerProcess], settings: Settings, tmp: Path, argv: list[str]) -> None:
    workers.append(WorkerProcess(worker_env(settings), log_dir=tmp / "logs", argv=argv).start())


async def settled(client: EngineBroker, task_id: str) -> Job:
    """The job once its run is recorded as final. taskiq stores the result first and acks
    after (``WHEN_SAVED``), and the ack reaches the ledger through the finisher: a result
    may be readable a moment before the job's state says how it ended."""

    async def final() -> bool:
        return (await client.ledger.get_job(task_id)).state.is_final

    await wait_until(final, 10, f"job {task_id} to be recorded as final")
    return await client.ledger.get_job(task_id)


async def runs(redis: Redis, settings: Settings, task_id: str) -> int:
    return int(await redis.hget(f"contract:{{{settings.queue_name}}}:runs", task_id) or 0)


@pytest.mark.parametrize("ack_type", ["when_received", "when_executed", "when_saved"])
async def test_a_returning_task_completes_under_every_worker_ack_type(
    ack_type: str, client: EngineBroker, redis: Redis, settings: Settings,
    workers: list[WorkerProcess], tmp_path: Path,
) -> None:  # fmt: skip
    start(workers, settings, tmp_path,
          ["-m", "taskiq", "worker", f"{MODULE}:broker", "--ack-type", ack_type])  # fmt: skip
    task = await kicker(client, "add").kiq(2, 3)
    result = await task.wait_result(timeout=30)
    assert (result.is_err, result.return_value) == (False, 5), result.error
    assert (await settled(client, task.task_id)).state is JobState.COMPLETED
    assert await runs(redis, settings, task.task_id) == 1


def kicker(client: EngineBroker, name: str, **labels: str) -> AsyncKicker[..., object]:
    """What ``user_tasks.<name>.kiq`` sends: the task's name and its decorator's labels (a
    client that imports the module gets them from the task; this one must not import it,
    or it would build the module's broker on the test process's settings)."""
    return AsyncKicker(f"{MODULE}:{name}", client, labels)


@pytest.mark.parametrize(
    ("name", "ack_type"), [("add_acked_when_executed", "when_executed"), ("add_and_ack", "manual")]
)
async def test_a_task_with_its_own_ack_type_completes(
    name: str, ack_type: str, client: EngineBroker, redis: Redis, settings: Settings,
    workers: list[WorkerProcess], tmp_path: Path,
) -> None:  # fmt: skip
    start(workers, settings, tmp_path,
          ["-m", "imagequeue_worker", "run", "--broker", f"{MODULE}:broker"])  # fmt: skip
    task = await kicker(client, name, ack_type=ack_type).kiq(2, 3)
    result = await task.wait_result(timeout=30)
    assert (result.is_err, result.return_value) == (False, 5), result.error
    assert (await settled(client, task.task_id)).state is JobState.COMPLETED
    assert await runs(redis, settings, task.task_id) == 1


async def test_a_run_that_never_acks_is_delivered_again_then_dead_lettered(
    client: EngineBroker, redis: Redis, settings: Settings, workers: list[WorkerProcess],
    tmp_path: Path,
) -> None:  # fmt: skip
    fast = replace(settings, lease_ms=600)
    start(workers, fast, tmp_path, ["-m", "taskiq", "worker", f"{MODULE}:broker"])
    task = await kicker(client, "never_acks", ack_type="manual").kiq()

    async def dead() -> bool:
        return (await client.ledger.get_job(task.task_id)).state is JobState.FAILED

    # Delivered again like a dead worker's job, STALL_LIMIT times; each run ends unacked
    # and is recovered within a lease period and a beat (0.8 s): well inside 10 s.
    await wait_until(dead, 10, "the unacked job to be dead-lettered")
    job = await client.ledger.get_job(task.task_id)
    assert await runs(redis, settings, task.task_id) == settings.stall_limit + 1
    assert (job.error or "").startswith(f"job stalled {settings.stall_limit + 1} times")
    assert sys.modules.get(MODULE) is None  # the test process never ran the user's tasks
