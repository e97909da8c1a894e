"""OpenAI's image API: ``POST /v1/images/generations``, answered with ``b64_json``."""

from __future__ import annotations

import re
import time
import zlib
from typing import Annotated, Any

import msgspec
from litestar import Response, post

from loadtest.stub_ai.generation import BadInputError, GenRequest, check_side, decode
from loadtest.stub_ai.images import to_base64
from loadtest.stub_ai.submissions import AnyRequest, Stub, Wire

_SIZE = re.compile(r"(\d{1,5})x(\d{1,5})")
# OpenAI's error ``type`` and ``code`` for the statuses the stub answers with.
_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", "invalid_value"),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("requests", "rate_limit_exceeded"),
    503: ("server_error", "overloaded"),
}


class ImagesBody(msgspec.Struct, kw_only=True):
    """The fields the stub reads; others (``style``, ``background`` ...) are ignored."""

    prompt: Annotated[str, msgspec.Meta(min_length=1)]
    model: str = "gpt-image-1"
    n: int = 1
    size: str = "1024x1024"
    quality: str = "auto"


def parse_images(body: bytes) -> GenRequest:
    """An images request as a generation request; the seed comes from the prompt."""
    asked = decode(body, ImagesBody)
    if asked.n != 1:
        raise BadInputError(f"n must be 1 here, got {asked.n}")
    width, height = _size(asked.size)
    # OpenAI takes no seed: the same prompt draws the same picture.
    seed = zlib.crc32(asked.prompt.encode())
    return GenRequest(asked.prompt, "", width, height, seed)


def _size(size: str) -> tuple[int, int]:
    if size == "auto":
        return 1024, 1024
    match = _SIZE.fullmatch(size)
    if match is None:
        raise BadInputError(f"size must be 'auto' or WIDTHxHEIGHT like '1024x1024', got {size!r}")
    return check_side("width", int(match[1])), check_side("height", int(match[2]))


def error(status: int, message: str) -> Response[Any]:
    """OpenAI's ``{"error": {"message", "type", "param", "code"}}``."""
    kind, code = _KINDS.get(status, ("server_error", None))
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Response(body, status_code=status)


WIRE = Wire("openai", error)


@post("/v1/images/generations", status_code=200)
async def generations(request: AnyRequest, stub: Stub) -> Response[Any]:
    """Answer ``{"created": <unix>, "data": [{"b64_json": <base64 PNG>}]}``."""
    result = await stub.generate(request, WIRE, parse_images)
    if isinstance(result, Response):
        return result
    data = [{"b64_json": to_base64(result.image.body)}]
    return Response({"created": int(time.time()), "data": data})


ROUTES = [generations]
