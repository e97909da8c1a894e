"""The image pipeline in real worker processes against upstreams other than our stub:
RunPod's own SDK test server, and a generic upstream whose answer points at an address the
SSRF guard refuses. Real Redis and SQLite; the worker's log is read for prompt leaks."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from imagequeue_common.contracts import CharacterRef, JobState, PoseRef
from imagequeue_common.generation import add_image_generation_job
from imagequeue_common.images import check_image
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.jobs import Job
from imagequeue_common.settings import Settings, replace
from imagequeue_common.store import CharacterStore, NewCharacter
from tests.support.procs import WorkerProcess, start_workers, wait_until, wait_workers_ready
from tests.support.recorder import RecordingServer
from tests.support.runpod_sdk import RunPodSDKServer

pytestmark = pytest.mark.slow
SECRET = "a description that must never reach a log line"  # noqa: S105 - not a password


@pytest.fixture
def pipe_settings(settings: Settings, tmp_path: Path) -> Settings:
    return replace(
        settings,
        database_url=f"sqlite:///{tmp_path}/imagequeue.db",
        assets_dir=str(tmp_path / "assets"),
        ai_poll_interval_ms=20,
        ai_read_timeout_s=10,
        ai_total_timeout_s=20,
        backoff_delay_ms=200,
    )


async def enqueue(broker: EngineBroker, store: CharacterStore, name: str) -> str:
    pose = (await store.list_poses())[0]
    character = await store.create_character(
        NewCharacter(user_id="user-1", name=name, pose_id=pose.id, description=SECRET)
    )
    return await add_image_generation_job(
        broker, CharacterRef(id=character.id, name=name), PoseRef(id=pose.id, name=pose.name),
        character.user_id,
    )  # fmt: skip


async def wait_final(broker: EngineBroker, job_id: str, timeout_s: float = 60) -> Job:
    async def final() -> bool:
        return (await broker.ledger.get_job(job_id)).state.is_final

    await wait_until(final, timeout_s, f"job {job_id} to end", poll_s=0.05)
    return await broker.ledger.get_job(job_id)


async def run_worker(
    workers: list[WorkerProcess], redis: Redis, settings: Settings, log_dir: Path, key: str = ""
) -> None:
    start_workers(workers, settings, log_dir=log_dir, ai_generation_api_key=key)
    await wait_workers_ready(redis, settings, 1)


def logged(log_dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in log_dir.glob("worker-*.log"))


async def test_runpods_sdk_server_end_to_end(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    runpod_sdk: RunPodSDKServer,
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    settings = replace(pipe_settings, ai_generation_backend="runpod",
                       ai_generation_api_url=runpod_sdk.url)  # fmt: skip
    await run_worker(workers, redis, settings, logs)
    shapes = ["image", "comfyui", "base64", "data-url"]
    done = [await enqueue(client, store, f"{shape}: Aria") for shape in shapes]
    failing = await enqueue(client, store, "raise: Aria")
    for job_id in done:
        job = await wait_final(client, job_id)
        assert (job.state, job.attempts) == (JobState.COMPLETED, 1), job.error
    pngs = sorted((Path(pipe_settings.assets_dir) / "characters").glob("*.png"))
    assert len(pngs) == len(shapes)
    for png in pngs:
        image = check_image(png.read_bytes())
        assert (image.width, image.height) == (pipe_settings.ai_image_width,
                                               pipe_settings.ai_image_height)  # fmt: skip
    job = await wait_final(client, failing)
    assert (job.state, job.attempts) == (JobState.FAILED, 1)  # the handler's error: terminal
    assert "runpod: the run ended FAILED: ValueError: the handler cannot draw this:" in (
        job.error or ""
    )
    assert SECRET not in (job.error or "")
    assert "the run ended FAILED" in logged(logs)
    assert SECRET not in logged(logs)


async def test_a_result_url_the_guard_refuses_is_dead_lettered_at_once(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    tmp_path: Path,
) -> None:
    with RecordingServer() as upstream, RecordingServer() as elsewhere:
        upstream.answer_json("/generate", {"image_url": f"{elsewhere.url}/image.png"})
        settings = replace(pipe_settings, ai_generation_api_url=f"{upstream.url}/generate")
        await run_worker(workers, redis, settings, tmp_path / "logs", "sk-for-the-upstream-only")
        job = await wait_final(client, await enqueue(client, store, "Aria"))
        assert (job.state, job.attempts) == (JobState.FAILED, 1)
        assert "refused the URL: 127.0.0.1 resolves to 127.0.0.1, not a public address" in (
            job.error or ""
        )
        assert elsewhere.requests == []
        assert upstream.requests[0].headers["authorization"] == "Bearer sk-for-the-upstream-only"
