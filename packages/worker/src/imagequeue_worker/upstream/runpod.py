"""``runpod``: serverless ``POST /run``, poll ``/status/{id}``, ``POST /cancel/{id}``.

``AI_GENERATION_API_URL`` is the endpoint's base, ``https://api.runpod.ai/v2/<endpoint id>``.
A job we stop waiting for (cancelled, timed out, worker shutting down) is cancelled on
RunPod too, so the GPU does not go on working for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from imagequeue_common.errors import (
    ImageQueueError,
    InvalidImageError,
    JobCancelledError,
    UpstreamRetryableError,
)
from imagequeue_worker.upstream.base import STEPS, ImageRequest, Watch
from imagequeue_worker.upstream.generic import find_image
from imagequeue_worker.upstream.http import UpstreamHTTP

log = logging.getLogger("imagequeue.upstream")
CANCEL_TIMEOUT_S = 5.0
FAILED = frozenset({"FAILED", "CANCELLED", "TIMED_OUT"})


class RunPodBackend:
    """RunPod serverless: the endpoint's worker gets our body as ``input``."""

    name = "runpod"

    def __init__(self, http: UpstreamHTTP, base_url: str, poll_interval_s: float) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.poll_interval_s = poll_interval_s

    async def generate(self, request: ImageRequest, watch: Watch) -> bytes:
        """Submit, then poll until the output is there; cancel upstream if we stop early."""
        body = {"input": _input(request)}
        submitted = await self.http.post_json(
            f"{self.base}/run", body, request_id=request.request_id
        )
        run_id = submitted.get("id") if isinstance(submitted, dict) else None
        if not isinstance(run_id, str) or not run_id:
            raise InvalidImageError(self.name, "no id in the answer to /run")
        done = False
        try:
            output = await self._wait(run_id, request, watch)
            done = True
        finally:
            if not done:
                await self._cancel(run_id)
        return await self.http.image_from(find_image(output, self.name))

    async def _wait(self, run_id: str, request: ImageRequest, watch: Watch) -> Any:
        while True:
            status = await self.http.get_json(f"{self.base}/status/{run_id}")
            state = status.get("status") if isinstance(status, dict) else None
            if state == "COMPLETED":
                return status.get("output")
            if state in FAILED:
                raise UpstreamRetryableError(self.name, f"the run ended {state}")
            if await watch.cancel_requested():
                raise JobCancelledError(request.request_id)
            await asyncio.sleep(self.poll_interval_s)

    async def _cancel(self, run_id: str) -> None:
        # Shielded: this also runs when our task is being cancelled (shutdown, timeout).
        async def cancel() -> None:
            with contextlib.suppress(ImageQueueError, TimeoutError):
                async with asyncio.timeout(CANCEL_TIMEOUT_S):
                    await self.http.send("POST", f"{self.base}/cancel/{run_id}")
                    log.info("cancelled run %s on runpod", run_id)

        await asyncio.shield(asyncio.create_task(cancel(), name=f"runpod-cancel-{run_id}"))


def _input(request: ImageRequest) -> dict[str, object]:
    return {
        **request.sd_fields(),
        "quality": request.quality,
        "num_inference_steps": STEPS[request.quality],
    }
