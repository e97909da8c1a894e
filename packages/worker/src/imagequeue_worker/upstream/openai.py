"""``openai``: ``POST /v1/images/generations`` with ``b64_json`` answers."""

from __future__ import annotations

from imagequeue_common.errors import InvalidImageError
from imagequeue_worker.upstream.base import DALLE_QUALITY, OPENAI_QUALITY, ImageRequest, Watch
from imagequeue_worker.upstream.http import UpstreamHTTP

DEFAULT_MODEL = "gpt-image-1"


class OpenAIBackend:
    """OpenAI images (gpt-image-1 by default; dall-e-2/3 also understood)."""

    name = "openai"

    def __init__(self, http: UpstreamHTTP, base_url: str, model: str) -> None:
        self.http = http
        self.url = f"{base_url.rstrip('/')}/v1/images/generations"
        self.model = model or DEFAULT_MODEL

    async def generate(self, request: ImageRequest, watch: Watch) -> bytes:
        """Ask for one image of the nearest supported size."""
        del watch
        prompt = request.prompt
        if request.negative_prompt:
            prompt = f"{prompt}. Avoid: {request.negative_prompt}"
        body: dict[str, object] = {
            "model": self.model,
            "prompt": prompt,
            "n": 1,
            "size": openai_size(request.width, request.height),
        }
        if self.model.startswith("dall-e"):
            body["response_format"] = "b64_json"
            body["quality"] = DALLE_QUALITY[request.quality]
        else:
            body["quality"] = OPENAI_QUALITY[request.quality]
        data = await self.http.post_json(self.url, body, request_id=request.request_id)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items or not isinstance(items[0], dict):
            raise InvalidImageError(self.name, "no data[0] in the answer")
        first = items[0]
        return await self.http.image_from(first.get("b64_json") or first.get("url"))


def openai_size(width: int, height: int) -> str:
    """The supported size with the nearest aspect: square, portrait or landscape."""
    if height > width * 1.2:
        return "1024x1536"
    if width > height * 1.2:
        return "1536x1024"
    return "1024x1024"
