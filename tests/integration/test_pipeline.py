"""The image pipeline end to end: real worker processes, real Redis, SQLite and the stub AI.

Latencies are scaled down through the stub's ``time_scale`` and backoff/lease durations
through settings, so retries, holds and timeouts all happen for real, only faster.
"""

from __future__ import annotations

import functools
import http.server
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from imagequeue_common.assets import AssetStore
from imagequeue_common.contracts import CharacterRef, JobState, PoseRef
from imagequeue_common.errors import GenerationDisabledError
from imagequeue_common.generation import add_image_generation_job
from imagequeue_common.images import check_image
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.context import JobHandle
from imagequeue_common.queue.jobs import Job
from imagequeue_common.queue.lease import Lease
from imagequeue_common.settings import Settings, replace
from imagequeue_common.store import Character, CharacterStore, NewCharacter
from imagequeue_worker.pipeline import ImagePipeline
from imagequeue_worker.upstream import create_backend, create_client
from tests.support.procs import (
    WorkerProcess,
    start_workers,
    stream_events,
    wait_until,
    wait_workers_ready,
)
from tests.support.stub import StubServer

pytestmark = pytest.mark.slow


@pytest.fixture
def pipe_settings(settings: Settings, stub_ai: StubServer, tmp_path: Path) -> Settings:
    stub_ai.configure(time_scale=0.002)  # 60-120 ms per image
    return replace(
        settings,
        ai_generation_api_url=f"{stub_ai.url}/generate",
        database_url=f"sqlite:///{tmp_path}/imagequeue.db",
        assets_dir=str(tmp_path / "assets"),
        ai_poll_interval_ms=20,
        ai_read_timeout_s=5,
        ai_total_timeout_s=5,
        backoff_delay_ms=200,
    )


async def run_workers(
    workers: list[WorkerProcess], redis: Redis, settings: Settings, count: int = 1, **env: Any
) -> None:
    start_workers(workers, settings, count=count, **env)
    await wait_workers_ready(redis, settings, count)


async def new_character(store: CharacterStore, name: str = "Aria Voss") -> Character:
    pose = (await store.list_poses())[0]
    return await store.create_character(NewCharacter(user_id="user-1", name=name, pose_id=pose.id))


async def enqueue(broker: EngineBroker, store: CharacterStore, character: Character) -> str:
    pose = await store.get_pose(character.pose_id)
    return await add_image_generation_job(
        broker,
        CharacterRef(id=character.id, name=character.name[:120]),
        PoseRef(id=pose.id, name=pose.name),
        character.user_id,
    )


async def wait_job(broker: EngineBroker, job_id: str, state: JobState, timeout_s: float) -> Job:
    async def reached() -> bool:
        return (await broker.ledger.get_job(job_id)).state == state

    await wait_until(reached, timeout_s, f"job {job_id} to be {state}", poll_s=0.05)
    return await broker.ledger.get_job(job_id)


def submissions(stub: StubServer, job_id: str) -> list[dict[str, Any]]:
    return [r for r in stub.stats()["recent"] if r["request_id"] == job_id]


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[str]:
    """A plain HTTP server over the assets folder, standing in for the API's /assets."""
    root = tmp_path / "assets"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_a_job_saves_a_png_and_its_url_serves_it(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    static_server: str,
    stub_ai: StubServer,
) -> None:
    settings = replace(pipe_settings, assets_url_prefix=static_server)
    await run_workers(workers, redis, settings)
    character = await new_character(store)
    job_id = await enqueue(client, store, character)
    job = await wait_job(client, job_id, JobState.COMPLETED, 30)
    assert (job.attempts, job.progress) == (1, 100)
    urls = (await store.get_character(character.id)).display_image_urls
    assert len(urls) == 1
    assert urls[0].startswith(f"{static_server}/characters/aria_voss_{character.id}_")
    async with httpx.AsyncClient() as http:
        answer = await http.get(urls[0])
    assert answer.status_code == 200
    image = check_image(answer.content)
    assert (image.width, image.height) == (settings.ai_image_width, settings.ai_image_height)
    assert await store.image_for_job(job_id) == urls[0]
    assert len(submissions(stub_ai, job_id)) == 1


@pytest.mark.parametrize(("backend", "path"), [("runpod", "/v2/iq"), ("comfyui", "")])
async def test_polling_backends_end_to_end(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    stub_ai: StubServer,
    backend: str,
    path: str,
) -> None:
    await run_workers(workers, redis, pipe_settings, ai_generation_backend=backend,
                      ai_generation_api_url=f"{stub_ai.url}{path}")  # fmt: skip
    character = await new_character(store)
    job_id = await enqueue(client, store, character)
    await wait_job(client, job_id, JobState.COMPLETED, 30)
    assert len((await store.get_character(character.id)).display_image_urls) == 1
    assert stub_ai.stats()["requests"][backend] == 1


async def test_retries_with_backoff_then_dead_letter(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    stub_ai: StubServer,
) -> None:
    stub_ai.configure(error_rate=1.0)
    await run_workers(workers, redis, pipe_settings)
    character = await new_character(store)
    job_id = await enqueue(client, store, character)
    job = await wait_job(client, job_id, JobState.FAILED, 30)
    assert job.attempts == 4
    assert "HTTP 500" in (job.error or "")
    seen = [r["t"] for r in submissions(stub_ai, job_id)]
    assert len(seen) == 4
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    # 200/400/800 ms: the seed's 5/10/20 s scaled by 1/25, as the AI side saw them.
    for gap, expected in zip(gaps, (0.2, 0.4, 0.8), strict=True):
        assert expected - 0.01 <= gap <= expected + 0.5, gaps
    assert (await store.get_character(character.id)).display_image_urls == []


async def test_a_bad_request_is_not_retried(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    stub_ai: StubServer,
) -> None:
    stub_ai.configure(script=["400"])
    await run_workers(workers, redis, pipe_settings)
    job_id = await enqueue(client, store, await new_character(store))
    job = await wait_job(client, job_id, JobState.FAILED, 30)
    assert job.attempts == 1
    assert "HTTP 400" in (job.error or "")
    assert len(submissions(stub_ai, job_id)) == 1


async def test_429_holds_every_worker_for_retry_after(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    stub_ai: StubServer,
) -> None:
    stub_ai.configure(script=["429"], retry_after_s=1.0)
    await run_workers(workers, redis, pipe_settings, count=2)
    first = await enqueue(client, store, await new_character(store, "First"))
    await wait_job(client, first, JobState.DELAYED, 20)  # its worker has set the hold by now
    others = [await enqueue(client, store, await new_character(store, f"C{i}")) for i in range(6)]
    for job_id in [first, *others]:
        await wait_job(client, job_id, JobState.COMPLETED, 30)
    recent = stub_ai.stats()["recent"]
    t429 = next(r["t"] for r in recent if r["status"] == 429)
    after = [r["t"] - t429 for r in recent if r["t"] > t429]
    assert len(after) == 7
    assert min(after) >= 1.0 - 0.05, after  # nobody asked the GPU while the hold lasted


@pytest.mark.parametrize("fault", ["hang", "invalid"])
async def test_a_hang_or_an_invalid_image_is_retried(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    stub_ai: StubServer,
    fault: str,
) -> None:
    stub_ai.configure(script=[fault], invalid_kind="html")
    settings = replace(pipe_settings, ai_total_timeout_s=0.5)
    await run_workers(workers, redis, settings)
    character = await new_character(store)
    job_id = await enqueue(client, store, character)
    job = await wait_job(client, job_id, JobState.COMPLETED, 30)
    assert job.attempts == 2
    assert [r["outcome"] for r in submissions(stub_ai, job_id)] == [fault, "ok"]
    assert len((await store.get_character(character.id)).display_image_urls) == 1


async def test_a_run_stopped_after_the_save_adds_no_second_url(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    stub_ai: StubServer,
) -> None:
    """Run 1 saves and records its image, then its worker dies before the job is finished
    (here: the test runs it and walks away). The job stalls, run 2 must not add a URL."""
    character = await new_character(store)
    job_id = await enqueue(client, store, character)
    claim = await client.ledger.claim("doomed-worker", 1, [])
    [claimed] = claim.jobs
    lease = Lease(claimed.job_id, claimed.token, claimed.attempts, claimed.max_attempts)
    async with create_client(pipe_settings) as http:
        pipeline = ImagePipeline(
            pipe_settings, store, AssetStore(pipe_settings.assets_dir),
            create_backend(pipe_settings, http), client.ledger,
        )  # fmt: skip
        payload = await client.ledger.get_job(job_id)
        first = await pipeline.run(_payload(payload), JobHandle(client.ledger, lease))
    await run_workers(workers, redis, pipe_settings)  # recovers the stalled job, runs it again
    job = await wait_job(client, job_id, JobState.COMPLETED, 30)
    assert (job.attempts, job.stalls) == (1, 1)  # a stall does not use up a retry
    assert '"reused":true' in (job.result or "")
    assert (await store.get_character(character.id)).display_image_urls == [first.url]
    assert len(submissions(stub_ai, job_id)) == 1  # run 2 did not even ask the GPU again
    files = list((Path(pipe_settings.assets_dir) / "characters").iterdir())
    assert [f.name for f in files] == [first.url.rsplit("/", 1)[1]]


def _payload(job: Job) -> Any:
    import msgspec  # noqa: PLC0415

    from imagequeue_common.contracts import GenerateImagePayload  # noqa: PLC0415

    message = msgspec.json.decode(job.payload)
    return msgspec.convert(message["args"][0], GenerateImagePayload)


async def test_a_hostile_name_cannot_write_outside_assets(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    tmp_path: Path,
) -> None:
    await run_workers(workers, redis, pipe_settings)
    character = await new_character(store, "../../../../../tmp/x/../evil\\name")
    job_id = await enqueue(client, store, character)
    await wait_job(client, job_id, JobState.COMPLETED, 30)
    [url] = (await store.get_character(character.id)).display_image_urls
    assets = (tmp_path / "assets" / "characters").resolve()
    written = [p for p in (tmp_path / "assets").rglob("*") if p.is_file()]
    assert [p.resolve().parent for p in written] == [assets]
    assert url == f"/assets/characters/{written[0].name}"
    assert written[0].name.startswith(f"tmp_x_evil_name_{character.id}_")
    assert not Path("/tmp/evil").exists()  # noqa: S108


async def test_generation_disabled_queues_nothing(
    pipe_settings: Settings, store: CharacterStore, redis: Redis
) -> None:
    del redis
    settings = replace(pipe_settings, ai_generation_enabled=False)
    broker = EngineBroker(settings, settings.redis_url_or_default)
    await broker.startup()
    try:
        with pytest.raises(GenerationDisabledError, match="AI_GENERATION_ENABLED"):
            await enqueue(broker, store, await new_character(store))
        assert (await broker.ledger.stats()).total == 0
    finally:
        await broker.shutdown()


async def test_a_cancelled_runpod_job_is_cancelled_upstream(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    stub_ai: StubServer,
) -> None:
    stub_ai.configure(time_scale=1.0, latency_min_s=30, latency_max_s=30)
    await run_workers(workers, redis, pipe_settings, ai_generation_backend="runpod",
                      ai_generation_api_url=f"{stub_ai.url}/v2/iq")  # fmt: skip
    job_id = await enqueue(client, store, await new_character(store))
    await wait_until(lambda: _in_flight(stub_ai), 20, "the run to reach the stub")
    assert await client.ledger.cancel(job_id) == "requested"
    await wait_job(client, job_id, JobState.CANCELLED, 20)
    stats = stub_ai.stats()
    assert (stats["cancels"], stats["in_flight"]) == (1, 0)


async def _in_flight(stub: StubServer) -> bool:
    return int(stub.stats()["in_flight"]) > 0


async def test_progress_points_and_lifecycle_log(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    await run_workers(workers, redis, pipe_settings, log_dir=logs)
    character = await new_character(store, "Luna Star")
    job_id = await enqueue(client, store, character)
    await wait_job(client, job_id, JobState.COMPLETED, 30)
    events = await stream_events(redis, client.ledger.keys.events)
    progress = [int(e["progress"]) for _, e in events if e["event"] == "progress"]
    assert progress == [10, 80, 100]
    await wait_until(lambda: _logged(logs, "Image added to character"), 10, "the log line")
    text = "".join(p.read_text() for p in logs.iterdir())
    assert f"Processing image generation job {job_id} for character: Luna Star" in text
    assert f"Job {job_id} progress: 80%" in text
    assert f"✓ Job {job_id} completed for character: {character.id}" in text
    assert "Image: /assets/characters/luna_star_" in text
    assert "standing" not in text.lower()  # the prompt (pose fragment) stays out of logs


async def _logged(logs: Path, needle: str) -> bool:
    return any(needle in p.read_text() for p in logs.iterdir())


async def test_the_gpu_side_never_sees_more_than_the_rate_limit(
    workers: list[WorkerProcess],
    redis: Redis,
    pipe_settings: Settings,
    store: CharacterStore,
    client: EngineBroker,
    stub_ai: StubServer,
) -> None:
    """Limits are counted at claim *and* when the request goes out: between the two, store
    reads and a busy event loop add jitter that would otherwise bunch requests together."""
    settings = replace(pipe_settings, rate_limit_max=8, rate_limit_duration_ms=1000)
    await run_workers(workers, redis, settings, count=2)
    ids = [await enqueue(client, store, await new_character(store, f"R{i}")) for i in range(24)]
    for job_id in ids:
        await wait_job(client, job_id, JobState.COMPLETED, 30)
    stats = stub_ai.stats()
    assert stats["submissions"] == 24
    # Known open point (issue #6): when the 2 cores are saturated, one request now and then
    # reaches the stub 40-150 ms after its permit, one more than the limit in a second as
    # the stub clocks it. Without the permit this run sees 12; the bound below still tells.
    assert stats["peak_per_second"] <= 8 + 1
