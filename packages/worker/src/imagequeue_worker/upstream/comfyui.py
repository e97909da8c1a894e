"""``comfyui``: queue a txt2img graph (``POST /prompt``), poll ``/history``, fetch ``/view``."""

from __future__ import annotations

import asyncio
from typing import Any

from imagequeue_common.errors import InvalidImageError, JobCancelledError, UpstreamRetryableError
from imagequeue_worker.upstream.base import STEPS, ImageRequest, Watch
from imagequeue_worker.upstream.http import UpstreamHTTP

DEFAULT_CHECKPOINT = "sd_xl_base_1.0.safetensors"
OUTPUT_NODE = "9"


class ComfyUIBackend:
    """ComfyUI's queue API with the standard txt2img graph."""

    name = "comfyui"

    def __init__(
        self, http: UpstreamHTTP, base_url: str, checkpoint: str, poll_interval_s: float
    ) -> None:
        self.http = http
        self.base = base_url.rstrip("/")
        self.checkpoint = checkpoint or DEFAULT_CHECKPOINT
        self.poll_interval_s = poll_interval_s

    async def generate(self, request: ImageRequest, watch: Watch) -> bytes:
        """Queue the graph, wait for its output image, download it."""
        body = {"prompt": self.workflow(request), "client_id": request.request_id}
        queued = await self.http.post_json(
            f"{self.base}/prompt", body, request_id=request.request_id
        )
        prompt_id = queued.get("prompt_id") if isinstance(queued, dict) else None
        if not isinstance(prompt_id, str) or not prompt_id:
            raise InvalidImageError(self.name, "no prompt_id in the answer to /prompt")
        while True:
            history = await self.http.get_json(f"{self.base}/history/{prompt_id}")
            entry = history.get(prompt_id) if isinstance(history, dict) else None
            if isinstance(entry, dict):
                return await self._download(entry)
            if await watch.cancel_requested():
                raise JobCancelledError(request.request_id)
            await asyncio.sleep(self.poll_interval_s)

    async def _download(self, entry: dict[str, Any]) -> bytes:
        status = entry.get("status")
        if isinstance(status, dict) and status.get("status_str") == "error":
            raise UpstreamRetryableError(self.name, "the workflow failed")
        for output in (entry.get("outputs") or {}).values():
            images = output.get("images") if isinstance(output, dict) else None
            if isinstance(images, list) and images and isinstance(images[0], dict):
                image = images[0]
                params = {
                    "filename": str(image.get("filename", "")),
                    "subfolder": str(image.get("subfolder", "")),
                    "type": str(image.get("type", "output")),
                }
                return (await self.http.send("GET", f"{self.base}/view", params=params)).body
        raise InvalidImageError(self.name, "the workflow produced no image")

    def workflow(self, request: ImageRequest) -> dict[str, Any]:
        """ComfyUI's default txt2img graph, filled in from ``request``."""
        return {
            "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": self.checkpoint}},
            "6": {
                "class_type": "CLIPTextEncode",
                "inputs": {"text": request.prompt, "clip": ["4", 1]},
            },
            "7": {
                "class_type": "CLIPTextEncode",
                "inputs": {"text": request.negative_prompt, "clip": ["4", 1]},
            },
            "5": {
                "class_type": "EmptyLatentImage",
                "inputs": {"width": request.width, "height": request.height, "batch_size": 1},
            },
            "3": {
                "class_type": "KSampler",
                "inputs": {
                    "seed": request.seed,
                    "steps": STEPS[request.quality],
                    "cfg": 7,
                    "sampler_name": "dpmpp_2m",
                    "scheduler": "karras",
                    "denoise": 1,
                    "model": ["4", 0],
                    "positive": ["6", 0],
                    "negative": ["7", 0],
                    "latent_image": ["5", 0],
                },
            },
            "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
            OUTPUT_NODE: {
                "class_type": "SaveImage",
                "inputs": {"filename_prefix": "imagequeue", "images": ["8", 0]},
            },
        }
