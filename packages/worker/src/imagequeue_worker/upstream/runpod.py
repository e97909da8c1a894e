"""``runpod``: serverless ``POST /run``, poll ``/status/{id}``, ``POST /cancel/{id}``.

``AI_GENERATION_API_URL`` is the endpoint's base, ``https://api.runpod.ai/v2/<endpoint id>``,
or the root of RunPod's SDK test server (``python handler.py --rp_serve_api``). The hosted
API documents ``GET /status``; the SDK's server serves ``POST /status`` only (and runs the
handler inside that request). So status is asked with GET until an answer is 405, and with
POST from then on, for the rest of the process.

A run we stop waiting for while it may still be running (our job cancelled, timed out, the
worker shutting down) is cancelled on RunPod too, so the GPU does not go on working for
nobody; a run that already ended is left alone. ``policy`` in the ``/run`` body makes RunPod
stop the run by itself once we no longer wait for it, should our cancel never arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
from typing import Any

import msgspec

from imagequeue_common.errors import (
    ImageQueueError,
    InvalidImageError,
    JobCancelledError,
    UpstreamRetryableError,
    UpstreamTerminalError,
)
from imagequeue_worker.upstream.base import STEPS, ImageRequest, Watch
from imagequeue_worker.upstream.generic import find_image
from imagequeue_worker.upstream.http import UpstreamHTTP
from imagequeue_worker.upstream.reasons import keepable

log = logging.getLogger("imagequeue.upstream")
CANCEL_TIMEOUT_S = 5.0
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})
# RunPod's bounds for a run's policy (ms): executionTimeout 5 s .. 7 days, ttl 10 s .. 7 days.
MIN_EXECUTION_MS, MIN_TTL_MS, MAX_POLICY_MS = 5_000, 10_000, 7 * 24 * 3600 * 1000
_CLASS = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")


class RunPodBackend:
    """RunPod serverless: the endpoint's worker gets our body as ``input``."""

    name = "runpod"

    def __init__(
        self, http: UpstreamHTTP, base_url: str, poll_interval_s: float, total_timeout_s: float
    ) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.poll_interval_s = poll_interval_s
        self.policy = run_policy(total_timeout_s)
        self.status_method = "GET"
        """Becomes POST after a 405 (RunPod's SDK test server), for this process."""

    async def generate(self, request: ImageRequest, watch: Watch) -> bytes:
        """Submit, then poll until the run ends; cancel upstream if we stop waiting first."""
        body = {"input": _input(request), "policy": self.policy}
        submitted = await self.http.post_json(
            f"{self.base}/run", body, request_id=request.request_id
        )
        run_id = submitted.get("id") if isinstance(submitted, dict) else None
        if not isinstance(run_id, str) or not run_id:
            raise InvalidImageError(self.name, "no id in the answer to /run")
        try:
            status = await self._wait(run_id, request, watch)
        except BaseException:
            await self._cancel(run_id)  # the run may still be going on: stop it there too
            raise
        if status.get("status") == "COMPLETED":
            return await self.http.image_from(find_image(status.get("output"), self.name))
        raise self._failure(status, request)

    async def _wait(self, run_id: str, request: ImageRequest, watch: Watch) -> dict[str, Any]:
        """The status answer that says the run ended (completed or not)."""
        while True:
            status = await self._status(run_id)
            if isinstance(status, dict) and status.get("status") in ENDED:
                return status
            if await watch.cancel_requested():
                raise JobCancelledError(request.request_id)
            await asyncio.sleep(self.poll_interval_s)

    async def _status(self, run_id: str) -> Any:
        url = f"{self.base}/status/{run_id}"
        if self.status_method == "GET":
            try:
                return await self.http.get_json(url)
            except UpstreamTerminalError as exc:
                if exc.status != 405:
                    raise
            if self.status_method == "GET":  # once, though concurrent polls may all see 405
                self.status_method = "POST"
                log.info("runpod: GET /status answered 405 (RunPod's SDK test server?): "
                         "asking with POST from now on")  # fmt: skip
        return await self.http.post_json(url, None)

    def _failure(self, status: dict[str, Any], request: ImageRequest) -> ImageQueueError:
        """FAILED with the handler's own error is terminal: the retry would send the same
        input with the same seed to the same handler, and a worker that crashes is re-run by
        RunPod itself. FAILED without a reason, TIMED_OUT (our own ``policy``) and CANCELLED
        (by someone else) may pass: retryable."""
        state = str(status.get("status"))
        reason = keepable(run_error(status.get("error")), (request.prompt, request.negative_prompt))
        detail = f"the run ended {state}: {reason}" if reason else f"the run ended {state}"
        if state == "FAILED" and reason:
            return UpstreamTerminalError(self.name, detail)
        return UpstreamRetryableError(self.name, detail)

    async def _cancel(self, run_id: str) -> None:
        # Shielded: this also runs when our task is being cancelled (shutdown, timeout).
        async def cancel() -> None:
            with contextlib.suppress(ImageQueueError, TimeoutError):
                async with asyncio.timeout(CANCEL_TIMEOUT_S):
                    await self.http.send("POST", f"{self.base}/cancel/{run_id}")
                    log.info("cancelled run %s on runpod", run_id)

        await asyncio.shield(asyncio.create_task(cancel(), name=f"runpod-cancel-{run_id}"))


def run_policy(total_timeout_s: float) -> dict[str, int]:
    """RunPod's own deadlines for a run (ms), both ``AI_TOTAL_TIMEOUT_S``: we stop waiting
    that long after we started to submit, and both of RunPod's clocks start later (ttl at
    its receipt of ``/run``, executionTimeout when a worker picks the run up), so neither
    cuts short a run we still wait for. Clamped to RunPod's bounds."""
    budget_ms = math.ceil(total_timeout_s * 1000)
    return {
        "executionTimeout": min(max(budget_ms, MIN_EXECUTION_MS), MAX_POLICY_MS),
        "ttl": min(max(budget_ms, MIN_TTL_MS), MAX_POLICY_MS),
    }


def run_error(raw: object) -> str:
    """The reason in a status answer's ``error``. RunPod's SDK sends a raised exception as
    the JSON of ``error_type``/``error_message``/``error_traceback``: that becomes
    ``Type: message`` (never the traceback); any other text is kept as it is."""
    if isinstance(raw, str):
        try:
            raw = msgspec.json.decode(text := raw)
        except msgspec.DecodeError:
            return text
    if isinstance(raw, dict):
        message = raw.get("error_message", raw.get("message"))
        if isinstance(message, str):
            kind = _CLASS.fullmatch(str(raw.get("error_type", "")))
            return f"{kind.group(1)}: {message}" if kind else message
        return msgspec.json.encode(raw).decode()
    return "" if raw is None else str(raw)


def _input(request: ImageRequest) -> dict[str, object]:
    return {
        **request.sd_fields(),
        "quality": request.quality,
        "num_inference_steps": STEPS[request.quality],
    }
