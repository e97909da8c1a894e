"""A deadline to start with a real worker process and the stub AI server: the job that could
not start in time ends ``expired`` and the GPU side never hears of it."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import CharacterRef, JobState, PoseRef
from imagequeue_common.generation import add_image_generation_job
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings, replace
from imagequeue_common.store import CharacterStore, NewCharacter
from tests.support.procs import WorkerProcess, start_workers, wait_until, wait_workers_ready
from tests.support.stub import StubServer

pytestmark = pytest.mark.slow


@pytest.fixture
def pipe_settings(settings: Settings, stub_ai: StubServer, tmp_path: Path) -> Settings:
    stub_ai.configure(time_scale=0.02)  # 0.6-1.2 s per image
    return replace(
        settings,
        ai_generation_api_url=f"{stub_ai.url}/generate",
        database_url=f"sqlite:///{tmp_path}/imagequeue.db",
        assets_dir=str(tmp_path / "assets"),
        worker_concurrency=1,
        rate_limit_max=0,
    )


async def test_a_job_past_its_deadline_never_reaches_the_stub(
    pipe_settings: Settings, client: EngineBroker, store: CharacterStore, redis: Redis,
    stub_ai: StubServer, workers: list[WorkerProcess],
) -> None:  # fmt: skip
    pose = (await store.list_poses())[0]
    refs = []
    for user in ("first", "second"):
        made = await store.create_character(NewCharacter(user_id=user, name=user, pose_id=pose.id))
        refs.append(CharacterRef(id=made.id, name=made.name))
    start_workers(workers, pipe_settings, count=1)  # one slot
    await wait_workers_ready(redis, pipe_settings, 1)
    pose_ref = PoseRef(id=pose.id, name=pose.name)
    running = await add_image_generation_job(client, refs[0], pose_ref, "first")

    async def started() -> bool:
        return (await client.ledger.get_job(running)).state == JobState.ACTIVE

    await wait_until(started, 10, "the first job to start")
    # The only slot is busy for 0.6 s or more: 0.2 s is too short a wait.
    late = await add_image_generation_job(client, refs[1], pose_ref, "second", start_deadline_s=0.2)

    async def settled() -> bool:
        states = [(await client.ledger.get_job(j)).state for j in (running, late)]
        return states == [JobState.COMPLETED, JobState.EXPIRED]

    await wait_until(settled, 20, "the first job to complete and the second to expire")
    job = await client.ledger.get_job(late)
    assert (job.started_at, job.attempts, job.worker) == (None, 0, None)
    seen = [r["request_id"] for r in stub_ai.stats()["recent"]]
    assert running in seen
    assert late not in seen
    assert (await client.ledger.stats()).expired == 1
