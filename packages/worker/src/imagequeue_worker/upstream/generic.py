"""``generic``: the seed's RunPod proxy, ``POST AI_GENERATION_API_URL`` with ``quality``.

The answer may be the image itself, or JSON carrying a base64 image or an image URL under
one of the usual keys.
"""

from __future__ import annotations

from typing import Any

from imagequeue_common.errors import InvalidImageError
from imagequeue_worker.upstream.base import ImageRequest, Watch
from imagequeue_worker.upstream.http import UpstreamHTTP

IMAGE_KEYS = ("image", "image_base64", "b64_json", "base64", "url", "image_url")


class GenericBackend:
    """One POST; the answer is the image or points at it."""

    name = "generic"

    def __init__(self, http: UpstreamHTTP, url: str) -> None:
        self.http = http
        self.url = url

    async def generate(self, request: ImageRequest, watch: Watch) -> bytes:
        """POST the seed's body and take the image out of the answer."""
        del watch  # one synchronous call: nothing to cancel upstream
        body = {**request.sd_fields(), "quality": request.quality}
        answer = await self.http.send("POST", self.url, json=body, request_id=request.request_id)
        if not answer.is_json:
            return answer.body
        return await self.http.image_from(find_image(self.http.decode_json(answer), self.name))


def find_image(data: Any, backend: str) -> object:
    """The image value in a JSON answer: a known key, ``images[0]``, ``data[0]``, ``output``."""
    for _ in range(4):  # unwrap at most a few levels of {"output": {...}} or [ ... ]
        if isinstance(data, list) and data:
            data = data[0]
            continue
        if not isinstance(data, dict):
            break
        for key in IMAGE_KEYS:
            if isinstance(data.get(key), str):
                return data[key]
        for key in ("images", "data", "output"):
            if key in data:
                data = data[key]
                break
        else:
            break
    if isinstance(data, str):
        return data
    raise InvalidImageError(backend, "no image in the answer")
