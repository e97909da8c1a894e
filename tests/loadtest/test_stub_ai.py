"""The stub AI server, driven over HTTP as a real subprocess."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import resource
import time
from typing import Any

import httpx
import pytest
from PIL import Image, UnidentifiedImageError

from loadtest.stub_ai.config import ConfigError, load_config
from tests.support.procs import wait_until
from tests.support.stub import StubServer

BODY = {
    "prompt": "a lighthouse on a cliff at dusk",
    "negative_prompt": "blurry",
    "width": 320,
    "height": 192,
    "seed": 7,
    "quality": "hq",
}
# Seconds, not scaled: long enough that a job is still running when the test looks at it.
SLOW = {"time_scale": 1.0, "latency_min_s": 30.0, "latency_max_s": 30.0}
BRIEF = {"time_scale": 1.0, "latency_min_s": 0.5, "latency_max_s": 0.8}


def png_size(data: bytes) -> tuple[int, int]:
    """Decode ``data`` fully with Pillow; its size."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.size


def assert_not_an_image(data: bytes) -> None:
    """``data`` cannot be decoded as an image."""
    with pytest.raises((UnidentifiedImageError, OSError)):
        png_size(data)


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    """``GET /stub/stats``."""
    response = await client.get("/stub/stats")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def wait_in_flight(client: httpx.AsyncClient, count: int, timeout_s: float = 10) -> None:
    """Wait until exactly ``count`` submissions are in flight."""

    async def reached() -> bool:
        return bool((await stats(client))["in_flight"] == count)

    await wait_until(reached, timeout_s, f"{count} submissions in flight")


async def generic_statuses(client: httpx.AsyncClient, count: int) -> list[int]:
    """Statuses of ``count`` generic submissions made one after the other."""
    return [(await client.post("/generate", json=BODY)).status_code for _ in range(count)]


# The five protocols


async def test_generic_answers_png_and_records_job_id_not_prompt(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/generate", json=BODY, headers={"X-Request-ID": "job-1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert png_size(response.content) == (320, 192)
    seen = await stats(client)
    assert seen["requests"]["generic"] == seen["submissions"] == 1
    assert seen["statuses"] == {"200": 1}
    [entry] = seen["recent"]
    assert entry == {
        "t": entry["t"],
        "protocol": "generic",
        "status": 200,
        "outcome": "ok",
        "request_id": "job-1",
        "seed": 7,
    }
    assert abs(entry["t"] - time.time()) < 60
    assert "lighthouse" not in json.dumps(seen)


async def test_images_are_deterministic_per_prompt_and_seed(client: httpx.AsyncClient) -> None:
    first = await client.post("/generate", json=BODY)
    again = await client.post("/generate", json=BODY)
    other_seed = await client.post("/generate", json={**BODY, "seed": 8})
    assert first.content == again.content
    assert first.content != other_seed.content


async def test_generic_base64_and_url_variants(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    encoded = (await client.post("/generate/base64", json=BODY)).json()
    assert encoded["seed"] == 7
    assert png_size(base64.b64decode(encoded["image"])) == (320, 192)

    url = (await client.post("/generate/url", json=BODY)).json()["url"]
    assert url.startswith(f"{stub_ai.url}/stub/images/")
    assert url.endswith(".png")
    download = await client.get(url)
    assert download.headers["content-type"] == "image/png"
    assert png_size(download.content) == (320, 192)
    assert (await client.get("/stub/images/unknown.png")).status_code == 404
    seen = await stats(client)
    assert seen["requests"]["generic"] == 2
    assert seen["polls"]["generic"] == 2


async def test_generic_rejects_bad_input_with_json_400(client: httpx.AsyncClient) -> None:
    for body in ({**BODY, "width": 10}, {**BODY, "prompt": ""}, {**BODY, "seed": "x"}, {}):
        response = await client.post("/generate", json=body)
        assert response.status_code == 400
        assert isinstance(response.json()["error"], str)
    assert "width" in (await client.post("/generate", json={**BODY, "width": 10})).text
    assert (await client.post("/generate", content=b"not json")).status_code == 400
    assert (await stats(client))["statuses"] == {"400": 6}


async def test_automatic1111_txt2img(client: httpx.AsyncClient) -> None:
    body = {**BODY, "steps": 20, "cfg_scale": 7, "sampler_name": "Euler a", "enable_hr": False}
    answer = (await client.post("/sdapi/v1/txt2img", json=body)).json()
    assert png_size(base64.b64decode(answer["images"][0])) == (320, 192)
    assert answer["parameters"]["enable_hr"] is False
    assert answer["parameters"]["steps"] == 20
    info = json.loads(answer["info"])
    assert info["seed"] == 7
    assert info["all_seeds"] == [7]
    random_seed = (await client.post("/sdapi/v1/txt2img", json={**body, "seed": -1})).json()
    assert json.loads(random_seed["info"])["seed"] >= 0
    assert (await stats(client))["requests"]["automatic1111"] == 2


async def test_openai_generations(client: httpx.AsyncClient) -> None:
    body = {"model": "gpt-image-1", "prompt": BODY["prompt"], "n": 1, "size": "512x384"}
    answer = (await client.post("/v1/images/generations", json={**body, "quality": "high"})).json()
    assert abs(answer["created"] - time.time()) < 60
    [image] = answer["data"]
    assert png_size(base64.b64decode(image["b64_json"])) == (512, 384)

    for bad in ({**body, "n": 2}, {**body, "size": "large"}, {**body, "size": "9000x512"}):
        response = await client.post("/v1/images/generations", json=bad)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["message"]
        assert "code" in error


COMFY_WORKFLOW = {
    "3": {"class_type": "KSampler", "inputs": {"seed": 11, "steps": 20, "model": ["4", 0]}},
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 384, "height": 256}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
    "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0]}},
}


async def comfy_history(client: httpx.AsyncClient, prompt_id: str) -> dict[str, Any]:
    """Poll ``/history`` until the prompt appears; its entry."""
    history: dict[str, Any] = {}

    async def done() -> bool:
        history.update((await client.get(f"/history/{prompt_id}")).json())
        return bool(history)

    await wait_until(done, 10, f"comfyui prompt {prompt_id}")
    entry: dict[str, Any] = history[prompt_id]
    return entry


async def test_comfyui_completes_after_polling(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(**BRIEF)
    queued = await client.post("/prompt", json={"prompt": COMFY_WORKFLOW, "client_id": "t"})
    assert queued.status_code == 200
    prompt_id = queued.json()["prompt_id"]
    assert queued.json()["node_errors"] == {}
    assert isinstance(queued.json()["number"], int)
    assert (await client.get(f"/history/{prompt_id}")).json() == {}

    entry = await comfy_history(client, prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert entry["status"]["completed"] is True
    [image] = entry["outputs"]["9"]["images"]
    assert image["subfolder"] == ""
    assert image["type"] == "output"
    view = await client.get("/view", params=image)
    assert view.headers["content-type"] == "image/png"
    assert png_size(view.content) == (384, 256)
    seen = await stats(client)
    assert seen["requests"]["comfyui"] == 1
    assert seen["recent"][0]["seed"] == 11
    assert (await client.get("/history/unknown")).json() == {}
    missing = await client.get("/view", params={**image, "filename": "unknown.png"})
    assert missing.status_code == 404


async def run_runpod(client: httpx.AsyncClient, endpoint: str = "ep1") -> str:
    """Submit a runpod job; its id."""
    queued = await client.post(f"/v2/{endpoint}/run", json={"input": BODY})
    assert queued.status_code == 200
    assert queued.json()["status"] == "IN_QUEUE"
    job_id: str = queued.json()["id"]
    return job_id


async def runpod_status(client: httpx.AsyncClient, job_id: str, endpoint: str = "ep1") -> Any:
    """The job's status body."""
    return (await client.get(f"/v2/{endpoint}/status/{job_id}")).json()


async def test_runpod_completes_after_polling(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(**BRIEF)
    job_id = await run_runpod(client)
    assert (await runpod_status(client, job_id))["status"] in {"IN_QUEUE", "IN_PROGRESS"}

    async def completed() -> bool:
        return bool((await runpod_status(client, job_id))["status"] == "COMPLETED")

    await wait_until(completed, 10, "runpod job to complete")
    done = await runpod_status(client, job_id)
    assert done["id"] == job_id
    assert done["executionTime"] >= 500
    assert done["output"]["seed"] == 7
    assert png_size(base64.b64decode(done["output"]["image"])) == (320, 192)
    assert (await client.get(f"/v2/ep1/status/{job_id}-x")).status_code == 404
    assert (await client.get(f"/v2/other/status/{job_id}")).status_code == 404
    seen = await stats(client)
    assert seen["requests"]["runpod"] == 1
    assert seen["polls"]["runpod"] >= 3
    assert seen["in_flight"] == 0


async def test_runpod_cancel_stops_the_job(client: httpx.AsyncClient, stub_ai: StubServer) -> None:
    stub_ai.configure(**SLOW)
    job_id = await run_runpod(client)
    assert (await stats(client))["in_flight"] == 1
    cancelled = await client.post(f"/v2/ep1/cancel/{job_id}")
    assert cancelled.json() == {"id": job_id, "status": "CANCELLED"}
    assert (await runpod_status(client, job_id))["status"] == "CANCELLED"
    seen = await stats(client)
    assert seen["cancels"] == 1
    assert seen["in_flight"] == 0
    assert (await client.post("/v2/ep1/cancel/unknown")).status_code == 404


# Faults


async def test_script_is_consumed_in_order(client: httpx.AsyncClient, stub_ai: StubServer) -> None:
    stub_ai.configure(script=["error", "429", "ok", "400", "invalid"])
    assert await generic_statuses(client, 5) == [500, 429, 200, 400, 200]
    assert stub_ai.config()["script"] == []
    assert await generic_statuses(client, 1) == [200]
    outcomes = [entry["outcome"] for entry in (await stats(client))["recent"]]
    assert outcomes == ["error", "429", "ok", "400", "invalid", "ok"]

    stub_ai.configure(script=["error"] * 4)
    assert await generic_statuses(client, 5) == [500, 500, 500, 500, 200]


async def test_error_is_500_with_protocol_error_body(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(script=["error", "error"])
    generic = await client.post("/generate", json=BODY)
    assert generic.status_code == 500
    assert generic.json()["error"]
    openai = await client.post("/v1/images/generations", json={"prompt": "x"})
    assert openai.status_code == 500
    assert openai.json()["error"]["type"] == "server_error"
    assert (await stats(client))["statuses"] == {"500": 2}


async def test_429_carries_retry_after_as_configured(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(script=["429", "429", "429"], retry_after_s=0.5)
    generic = await client.post("/generate", json=BODY)
    assert generic.status_code == 429
    assert generic.headers["retry-after"] == "0.5"
    openai = await client.post("/v1/images/generations", json={"prompt": "x"})
    assert openai.json()["error"]["code"] == "rate_limit_exceeded"
    # Asynchronous protocols refuse at submission.
    runpod = await client.post("/v2/ep1/run", json={"input": BODY})
    assert runpod.status_code == 429
    stub_ai.configure(script=["429"], retry_after_s=2)
    assert (await client.post("/generate", json=BODY)).headers["retry-after"] == "2"


async def test_injected_400_is_json(client: httpx.AsyncClient, stub_ai: StubServer) -> None:
    stub_ai.configure(script=["400"])
    response = await client.post("/sdapi/v1/txt2img", json=BODY)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"]


async def test_503_beyond_max_concurrency(client: httpx.AsyncClient, stub_ai: StubServer) -> None:
    stub_ai.configure(max_concurrency=2, **SLOW)
    jobs = [await run_runpod(client), await run_runpod(client)]
    assert (await client.post("/v2/ep1/run", json={"input": BODY})).status_code == 503
    assert (await client.post("/generate", json=BODY)).status_code == 503
    for job_id in jobs:
        await client.post(f"/v2/ep1/cancel/{job_id}")
    stub_ai.configure(latency_min_s=0.01, latency_max_s=0.01)
    assert (await client.post("/generate", json=BODY)).status_code == 200
    seen = await stats(client)
    assert seen["statuses"] == {"200": 3, "503": 2}
    assert seen["peak_concurrency"] == 2


async def test_invalid_truncated_is_half_a_png(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(script=["invalid"])
    broken = await client.post("/generate", json=BODY)
    whole = await client.post("/generate", json=BODY)
    assert broken.status_code == 200
    assert broken.headers["content-type"] == "image/png"
    assert_not_an_image(broken.content)
    assert broken.content == whole.content[: len(whole.content) // 2]


async def test_invalid_html_replaces_the_answer(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(script=["invalid", "invalid"], invalid_kind="html")
    for path in ("/generate", "/sdapi/v1/txt2img"):
        response = await client.post(path, json=BODY)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "<html>" in response.text


async def test_invalid_image_of_async_job_is_served_at_completion(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(script=["invalid"])
    prompt_id = (await client.post("/prompt", json={"prompt": COMFY_WORKFLOW})).json()["prompt_id"]
    [image] = (await comfy_history(client, prompt_id))["outputs"]["9"]["images"]
    view = await client.get("/view", params=image)
    assert view.status_code == 200
    assert_not_an_image(view.content)


async def test_hang_times_the_client_out_while_stats_answer(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(script=["hang"])
    hung = asyncio.create_task(client.post("/generate", json=BODY, timeout=1.5))
    await wait_in_flight(client, 1)
    with pytest.raises(httpx.ReadTimeout):
        await hung
    # The stub notices the client left and stops counting the request.
    await wait_in_flight(client, 0)
    [entry] = (await stats(client))["recent"]
    assert entry["outcome"] == "hang"
    assert entry["status"] is None


async def test_hang_of_async_job_never_completes(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(script=["hang"])
    job_id = await run_runpod(client)
    # A later job completes; the hung one is still in progress then.
    second = await run_runpod(client)

    async def second_done() -> bool:
        return bool((await runpod_status(client, second))["status"] == "COMPLETED")

    await wait_until(second_done, 10, "the second runpod job")
    assert (await runpod_status(client, job_id))["status"] == "IN_PROGRESS"
    assert (await stats(client))["in_flight"] == 1
    await client.post(f"/v2/ep1/cancel/{job_id}")


# Statistics, auth and config


async def test_peak_per_second_counts_a_burst(client: httpx.AsyncClient) -> None:
    burst = 30
    answers = await asyncio.gather(*(client.post("/generate", json=BODY) for _ in range(burst)))
    assert {a.status_code for a in answers} == {200}
    seen = await stats(client)
    assert seen["submissions"] == burst
    assert seen["peak_per_second"] == burst
    assert 1 <= seen["peak_concurrency"] <= burst


async def test_stays_responsive_with_1000_in_flight(
    stub_ai: StubServer, client: httpx.AsyncClient
) -> None:
    # One socket each on both sides: fewer where the descriptor limit is low (macOS: 256).
    count = min(1000, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100)
    stub_ai.configure(script=["hang"] * count)
    limits = httpx.Limits(max_connections=count + 10)
    async with httpx.AsyncClient(base_url=stub_ai.url, timeout=60, limits=limits) as crowd:
        hung = [
            asyncio.create_task(crowd.post("/generate", json={**BODY, "width": 64, "height": 64}))
            for _ in range(count)
        ]
        await wait_in_flight(client, count, timeout_s=30)
        started = time.monotonic()
        await stats(client)
        assert time.monotonic() - started < 1.0
        for task in hung:
            task.cancel()
        await asyncio.gather(*hung, return_exceptions=True)
    await wait_in_flight(client, 0)
    assert (await stats(client))["peak_concurrency"] == count


async def test_api_key_is_required_when_set(client: httpx.AsyncClient, stub_ai: StubServer) -> None:
    stub_ai.configure(api_key="sekret")
    assert (await client.post("/generate", json=BODY)).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await client.post("/generate", json=BODY, headers=wrong)).status_code == 401
    openai = await client.post("/v1/images/generations", json={"prompt": "x"})
    assert openai.status_code == 401
    assert openai.json()["error"]["code"] == "invalid_api_key"
    assert (await client.get("/v2/ep1/status/any")).status_code == 401
    assert (await client.get("/history/any")).status_code == 401
    right = {"Authorization": "Bearer sekret"}
    assert (await client.post("/generate", json=BODY, headers=right)).status_code == 200
    seen = await stats(client)
    assert seen["statuses"] == {"401": 3, "200": 1}
    assert [e["outcome"] for e in seen["recent"]][:3] == ["unauthorized"] * 3


async def test_bad_config_is_422_and_changes_nothing(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    before = stub_ai.config()
    assert before["time_scale"] == 0.002  # from STUB_TIME_SCALE
    bad: list[tuple[Any, str]] = [
        ({"error_rate": 2}, "error_rate"),
        ({"nope": 1}, "nope"),
        ({"script": ["ok", "boom"]}, "script"),
        ({"invalid_kind": "gif"}, "invalid_kind"),
        ({"max_concurrency": -1}, "max_concurrency"),
        ({"latency_min_s": 9, "latency_max_s": 1}, "latency_min_s"),
        ({"time_scale": 0.5, "error_rate": 0.7, "rate_429": 0.7}, "rate_429"),
        ([1, 2], "object"),
    ]
    for body, named in bad:
        response = await client.post("/stub/config", json=body)
        assert response.status_code == 422, body
        assert named in response.json()["error"], body
    assert (await client.post("/stub/config", content=b"{")).status_code == 422
    assert stub_ai.config() == before


async def test_reset_clears_stats_and_script(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(script=["error", "error"])
    await generic_statuses(client, 1)
    cleared = stub_ai.reset()
    assert cleared["submissions"] == 0
    assert cleared["recent"] == []
    assert cleared["statuses"] == {}
    assert stub_ai.config()["script"] == []
    assert await generic_statuses(client, 1) == [200]


async def test_seeded_rates_replay_after_reset(
    client: httpx.AsyncClient, stub_ai: StubServer
) -> None:
    stub_ai.configure(seed=1234, error_rate=0.3, rate_429=0.3, latency_min_s=1, latency_max_s=2)
    first = await generic_statuses(client, 12)
    stub_ai.reset()
    assert await generic_statuses(client, 12) == first
    assert set(first) <= {200, 429, 500}
    assert len(set(first)) > 1


def test_env_config_parsing() -> None:
    config = load_config({"STUB_SCRIPT": "429, ok", "STUB_RETRY_AFTER_S": "0.5", "STUB_SEED": ""})
    assert config.script == ("429", "ok")
    assert config.retry_after_s == 0.5
    assert config.seed is None
    with pytest.raises(ConfigError, match="STUB_ERROR_RATE"):
        load_config({"STUB_ERROR_RATE": "lots"})
