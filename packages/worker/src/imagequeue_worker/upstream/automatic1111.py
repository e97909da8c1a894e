"""``automatic1111``: the Stable Diffusion web UI's ``POST /sdapi/v1/txt2img``."""

from __future__ import annotations

from imagequeue_common.errors import InvalidImageError
from imagequeue_worker.upstream.base import STEPS, ImageRequest, Watch
from imagequeue_worker.upstream.http import UpstreamHTTP


class Automatic1111Backend:
    """txt2img; the answer's ``images[0]`` is the base64 PNG."""

    name = "automatic1111"

    def __init__(self, http: UpstreamHTTP, base_url: str) -> None:
        self.http = http
        self.url = f"{base_url.rstrip('/')}/sdapi/v1/txt2img"

    async def generate(self, request: ImageRequest, watch: Watch) -> bytes:
        """Run txt2img with the quality's step count."""
        del watch
        body = {
            **request.sd_fields(),
            "steps": STEPS[request.quality],
            "cfg_scale": 7,
            "sampler_name": "DPM++ 2M",
            "batch_size": 1,
            "n_iter": 1,
        }
        data = await self.http.post_json(self.url, body, request_id=request.request_id)
        images = data.get("images") if isinstance(data, dict) else None
        if not isinstance(images, list) or not images:
            raise InvalidImageError(self.name, "no images in the answer")
        return await self.http.image_from(images[0])
