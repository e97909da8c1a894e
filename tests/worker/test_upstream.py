"""Every upstream adapter against the real stub AI server, and the error classes they raise."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from imagequeue_common.errors import (
    InvalidImageError,
    JobCancelledError,
    SettingsError,
    UpstreamRetryableError,
    UpstreamTerminalError,
)
from imagequeue_common.images import ImageDecodeError, check_image
from imagequeue_common.settings import Settings, replace
from imagequeue_worker.upstream import ImageBackend, ImageRequest, create_backend, create_client
from imagequeue_worker.upstream.http import parse_retry_after
from tests.support.stub import StubServer

REQUEST = ImageRequest(
    prompt="Aria Voss, silver hair, standing portrait",
    negative_prompt="blurry",
    width=256,
    height=320,
    seed=42,
    quality="hq",
    request_id="img-test-1",
)
RUNPOD = "/v2/stub-endpoint"
MakeBackend = Callable[..., ImageBackend]
# (backend, path after the stub's base URL, the size the stub draws)
BACKENDS = [
    ("generic", "/generate", (256, 320)),
    ("generic", "/generate/base64", (256, 320)),
    ("generic", "/generate/url", (256, 320)),
    ("automatic1111", "", (256, 320)),
    ("openai", "", (1024, 1536)),  # the nearest size OpenAI offers to a portrait
    ("comfyui", "", (256, 320)),
    ("runpod", RUNPOD, (256, 320)),
]


class Watch:
    """A job's view for polling adapters; ``cancel_after`` polls it says "cancelled"."""

    def __init__(self, cancel_after: int | None = None) -> None:
        self.cancel_after = cancel_after
        self.asked = 0

    async def cancel_requested(self) -> bool:
        self.asked += 1
        return self.cancel_after is not None and self.asked > self.cancel_after


@pytest.fixture
def base(stub_ai: StubServer) -> Settings:
    stub_ai.configure(time_scale=0.001)  # 30-60 ms per image
    return Settings(
        ai_generation_api_url=stub_ai.url,
        ai_poll_interval_ms=10,
        ai_read_timeout_s=5,
        ai_total_timeout_s=10,
    )


@pytest.fixture
async def backend_for(base: Settings) -> AsyncIterator[MakeBackend]:
    clients: list[httpx.AsyncClient] = []

    def make(kind: str, path: str = "", **changes: object) -> ImageBackend:
        changes.setdefault("ai_generation_api_url", f"{base.ai_generation_api_url}{path}")
        settings = replace(base, ai_generation_backend=kind, **changes)
        client = create_client(settings)
        clients.append(client)
        return create_backend(settings, client)

    yield make
    for client in clients:
        await client.aclose()


@pytest.mark.parametrize(("kind", "path", "size"), BACKENDS)
async def test_each_backend_brings_back_a_decodable_image(
    stub_ai: StubServer, backend_for: MakeBackend, kind: str, path: str, size: tuple[int, int]
) -> None:
    data = await backend_for(kind, path).generate(REQUEST, Watch())
    checked = check_image(data)
    assert (checked.source_format, (checked.width, checked.height)) == ("PNG", size)
    stats = stub_ai.stats()
    assert stats["requests"][kind] == 1
    assert stats["recent"][-1]["request_id"] == REQUEST.request_id
    if kind != "openai":  # OpenAI's API takes no seed
        assert stats["recent"][-1]["seed"] == REQUEST.seed


async def test_same_seed_same_picture(backend_for: MakeBackend) -> None:
    backend = backend_for("generic", "/generate")
    first = await backend.generate(REQUEST, Watch())
    assert await backend.generate(REQUEST, Watch()) == first


@pytest.mark.parametrize(("outcome", "status"), [("error", 500), ("503", 503), ("429", 429)])
@pytest.mark.parametrize(("kind", "path"), [("generic", "/generate"), ("openai", ""),
                                            ("comfyui", ""), ("runpod", RUNPOD)])  # fmt: skip
async def test_server_errors_and_429_are_retryable(
    stub_ai: StubServer, backend_for: MakeBackend, kind: str, path: str, outcome: str, status: int
) -> None:
    stub_ai.configure(script=[outcome], retry_after_s=0.5)
    with pytest.raises(UpstreamRetryableError) as caught:
        await backend_for(kind, path).generate(REQUEST, Watch())
    assert caught.value.status == status
    assert caught.value.backend == kind
    if status == 429:
        assert caught.value.retry_after_s == 0.5


@pytest.mark.parametrize(("kind", "path"), [("generic", "/generate"), ("automatic1111", ""),
                                            ("runpod", RUNPOD)])  # fmt: skip
async def test_a_bad_request_is_terminal(
    stub_ai: StubServer, backend_for: MakeBackend, kind: str, path: str
) -> None:
    stub_ai.configure(script=["400"])
    with pytest.raises(UpstreamTerminalError) as caught:
        await backend_for(kind, path).generate(REQUEST, Watch())
    assert caught.value.status == 400


async def test_a_missing_key_is_terminal_and_the_key_header_works(
    stub_ai: StubServer, backend_for: MakeBackend
) -> None:
    stub_ai.configure(api_key="sk-test")
    with pytest.raises(UpstreamTerminalError) as caught:
        await backend_for("openai").generate(REQUEST, Watch())
    assert caught.value.status == 401
    keyed = backend_for("openai", ai_generation_api_key="sk-test")
    check_image(await keyed.generate(REQUEST, Watch()))


@pytest.mark.parametrize("kind", ["truncated", "html"])
@pytest.mark.parametrize(("backend", "path"), [("generic", "/generate"), ("comfyui", "")])
async def test_invalid_images_do_not_decode(
    stub_ai: StubServer, backend_for: MakeBackend, kind: str, backend: str, path: str
) -> None:
    stub_ai.configure(script=["invalid"], invalid_kind=kind)
    try:
        data = await backend_for(backend, path).generate(REQUEST, Watch())
    except InvalidImageError:
        return  # refused already while reading the answer
    with pytest.raises(ImageDecodeError):
        check_image(data)


async def test_a_hang_ends_in_a_read_timeout(stub_ai: StubServer, backend_for: MakeBackend) -> None:
    stub_ai.configure(script=["hang"])
    backend = backend_for("automatic1111", ai_read_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(UpstreamRetryableError, match="timeout") as raised:
        await backend.generate(REQUEST, Watch())
    assert raised.value.kind == "timeout"  # the metrics label, from the error's own field
    assert time.monotonic() - started < 3
    assert stub_ai.stats()["statuses"] == {}  # the stub never answered it


async def test_no_server_is_a_retryable_connection_error(backend_for: MakeBackend) -> None:
    from imagequeue_common.embedded_redis import free_port  # noqa: PLC0415

    backend = backend_for("generic", ai_generation_api_url=f"http://127.0.0.1:{free_port()}/x")
    with pytest.raises(UpstreamRetryableError, match="connection error") as raised:
        await backend.generate(REQUEST, Watch())
    assert raised.value.kind == "connection"


async def test_answers_past_the_size_cap_are_refused(backend_for: MakeBackend) -> None:
    backend = backend_for("generic", "/generate", ai_max_response_bytes=1024)
    with pytest.raises(InvalidImageError, match="larger than 1024 bytes"):
        await backend.generate(REQUEST, Watch())


async def test_runpod_cancels_upstream_when_the_job_is_cancelled(
    stub_ai: StubServer, backend_for: MakeBackend
) -> None:
    stub_ai.configure(time_scale=1.0, latency_min_s=30, latency_max_s=30)
    watch = Watch(cancel_after=2)
    with pytest.raises(JobCancelledError):
        await backend_for("runpod", RUNPOD).generate(REQUEST, watch)
    stats = stub_ai.stats()
    assert stats["cancels"] == 1
    assert stats["in_flight"] == 0


async def test_runpod_cancels_upstream_when_we_give_up_waiting(
    stub_ai: StubServer, backend_for: MakeBackend
) -> None:
    stub_ai.configure(script=["hang"])
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await backend_for("runpod", RUNPOD).generate(REQUEST, Watch())
    assert stub_ai.stats()["cancels"] == 1


async def test_a_backend_needs_a_url() -> None:
    async with create_client(Settings()) as client:
        with pytest.raises(SettingsError, match="AI_GENERATION_API_URL"):
            create_backend(Settings(), client)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("999999", 3600.0), ("soon", None), ("", None),
     (None, None), ("nan", None)],
)  # fmt: skip
def test_retry_after_in_seconds(raw: str | None, seconds: float | None) -> None:
    assert parse_retry_after(raw) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = 1_700_000_000.0
    raw = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(raw, now=now) == pytest.approx(30, abs=1)
