"""The runpod adapter against RunPod's own SDK test server (every common output shape, a
handler that raises), and against a recording server for what it sends: the run's policy,
and a cancel only for a run that may still be running."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import msgspec
import pytest

from imagequeue_common.errors import (
    JobCancelledError,
    UpstreamRetryableError,
    UpstreamTerminalError,
)
from imagequeue_common.images import check_image
from imagequeue_common.settings import Settings, replace
from imagequeue_worker.upstream import ImageBackend, ImageRequest, create_backend, create_client
from imagequeue_worker.upstream.reasons import MAX_REASON_CHARS, keepable
from imagequeue_worker.upstream.runpod import RunPodBackend, run_error, run_policy
from tests.support.recorder import RecordingServer
from tests.support.runpod_sdk import RunPodSDKServer

PROMPT = "Aria Voss, silver hair and a long blue coat, standing portrait, detailed illustration"
REQUEST = ImageRequest(prompt=PROMPT, negative_prompt="blurry", width=256, height=320, seed=42,
                       quality="hq", request_id="img-runpod-1")  # fmt: skip
SHAPES = ["image", "comfyui", "base64", "data-url"]
RUN = "/v2/endpoint"
MakeBackend = Callable[[str], RunPodBackend]


class Watch:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.cancel_after = cancel_after
        self.asked = 0

    async def cancel_requested(self) -> bool:
        self.asked += 1
        return self.cancel_after is not None and self.asked > self.cancel_after


def asking(shape: str) -> ImageRequest:
    """``REQUEST`` with a prompt whose first word picks the handler's answer."""
    return replace_prompt(f"{shape}: {PROMPT}")


def replace_prompt(prompt: str) -> ImageRequest:
    return msgspec.structs.replace(REQUEST, prompt=prompt)


@pytest.fixture
async def runpod_at() -> AsyncIterator[MakeBackend]:
    clients: list[httpx.AsyncClient] = []
    base = Settings(ai_generation_backend="runpod", ai_poll_interval_ms=10,
                    ai_read_timeout_s=10, ai_total_timeout_s=20)  # fmt: skip

    def make(url: str) -> RunPodBackend:
        settings = replace(base, ai_generation_api_url=url)
        clients.append(create_client(settings))
        backend: ImageBackend = create_backend(settings, clients[-1])
        assert isinstance(backend, RunPodBackend)
        return backend

    yield make
    for client in clients:
        await client.aclose()


@pytest.mark.parametrize("shape", SHAPES)
async def test_each_output_shape_from_the_sdk_server(
    runpod_sdk: RunPodSDKServer, runpod_at: MakeBackend, shape: str
) -> None:
    backend = runpod_at(runpod_sdk.url)
    checked = check_image(await backend.generate(asking(shape), Watch()))
    assert (checked.width, checked.height) == (256, 320)
    assert backend.status_method == "POST"  # the SDK answered GET /status with 405


async def test_a_raising_handler_fails_with_its_message_and_no_prompt(
    runpod_sdk: RunPodSDKServer, runpod_at: MakeBackend
) -> None:
    with pytest.raises(UpstreamTerminalError) as failed:
        await runpod_at(runpod_sdk.url).generate(asking("raise"), Watch())
    message = str(failed.value)
    assert (
        message
        == "runpod: the run ended FAILED: ValueError: the handler cannot draw this: <prompt>"
    )
    assert "silver hair" not in message


async def test_a_handler_refusal_is_terminal_in_its_own_words(
    runpod_sdk: RunPodSDKServer, runpod_at: MakeBackend
) -> None:
    with pytest.raises(UpstreamTerminalError, match=r"FAILED: the handler refused the input"):
        await runpod_at(runpod_sdk.url).generate(asking("error"), Watch())


@pytest.fixture
def runpod_api() -> Iterator[RecordingServer]:
    """A stand-in for the hosted API: ``/run`` answers run ``r1``; tests script ``/status``."""
    with RecordingServer() as server:
        server.answer_json(f"{RUN}/run", {"id": "r1", "status": "IN_QUEUE"})
        server.answer_json(f"{RUN}/cancel/r1", {"id": "r1", "status": "CANCELLED"})
        yield server


SDK_ERROR = msgspec.json.encode({"error_type": "<class 'torch.OutOfMemoryError'>",
                                 "error_message": "CUDA out of memory",
                                 "error_traceback": "Traceback ..."}).decode()  # fmt: skip


@pytest.mark.parametrize(
    ("state", "error", "kind", "said"),
    [("FAILED", SDK_ERROR, UpstreamTerminalError, "FAILED: OutOfMemoryError: CUDA out of memory"),
     ("FAILED", "the handler said no", UpstreamTerminalError, "FAILED: the handler said no"),
     ("FAILED", None, UpstreamRetryableError, "the run ended FAILED"),
     ("TIMED_OUT", None, UpstreamRetryableError, "the run ended TIMED_OUT"),
     ("CANCELLED", None, UpstreamRetryableError, "the run ended CANCELLED")],
)  # fmt: skip
async def test_an_ended_run_is_not_cancelled_and_says_why(
    runpod_api: RecordingServer,
    runpod_at: MakeBackend,
    state: str,
    error: str | None,
    kind: type[Exception],
    said: str,
) -> None:
    answer = {"id": "r1", "status": state, **({"error": error} if error else {})}
    runpod_api.answer_json(f"{RUN}/status/r1", answer)
    with pytest.raises(kind) as ended:
        await runpod_at(f"{runpod_api.url}{RUN}").generate(REQUEST, Watch())
    assert str(ended.value).endswith(said)
    assert "Traceback" not in str(ended.value)
    assert runpod_api.received(f"{RUN}/cancel/r1") == []
    assert [r.method for r in runpod_api.received(f"{RUN}/status/r1")] == ["GET"]


async def test_a_run_we_stop_waiting_for_is_cancelled(
    runpod_api: RecordingServer, runpod_at: MakeBackend
) -> None:
    runpod_api.answer_json(f"{RUN}/status/r1", {"id": "r1", "status": "IN_PROGRESS"})
    with pytest.raises(JobCancelledError):
        await runpod_at(f"{runpod_api.url}{RUN}").generate(REQUEST, Watch(cancel_after=2))
    assert len(runpod_api.received(f"{RUN}/cancel/r1")) == 1


async def test_the_run_carries_our_deadline_as_its_policy(
    runpod_api: RecordingServer, runpod_at: MakeBackend
) -> None:
    runpod_api.answer_json(f"{RUN}/status/r1", {"id": "r1", "status": "CANCELLED"})
    with pytest.raises(UpstreamRetryableError):
        await runpod_at(f"{runpod_api.url}{RUN}").generate(REQUEST, Watch())
    body = msgspec.json.decode(runpod_api.received(f"{RUN}/run")[0].body)
    assert body["policy"] == {"executionTimeout": 20_000, "ttl": 20_000}
    assert body["input"]["prompt"] == PROMPT


def test_the_policy_stays_within_runpods_bounds() -> None:
    assert run_policy(120) == {"executionTimeout": 120_000, "ttl": 120_000}
    assert run_policy(0.5) == {"executionTimeout": 5_000, "ttl": 10_000}
    week = 7 * 24 * 3600 * 1000
    assert run_policy(10**9) == {"executionTimeout": week, "ttl": week}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [(SDK_ERROR, "OutOfMemoryError: CUDA out of memory"), ("plain words", "plain words"),
     ({"message": "as an object"}, "as an object"), (None, ""), ("", ""), ('"quoted"', "quoted")],
)  # fmt: skip
def test_the_reason_in_a_status_error(raw: object, reason: str) -> None:
    assert run_error(raw) == reason


def test_a_reason_is_one_capped_line_without_the_prompt() -> None:
    echoed = f"bad input:\n  {PROMPT[:40]}... and then {'x' * 1000}"
    kept = keepable(echoed, (PROMPT, "blurry"))
    assert kept.startswith("bad input: <prompt>... and then xxx")
    assert len(kept) == MAX_REASON_CHARS
    assert "\n" not in kept
    assert PROMPT[:24] not in kept
    assert keepable("nothing secret here", (PROMPT,)) == "nothing secret here"
