"""The generic protocol (the user's RunPod proxy): PNG bytes, base64 JSON, or a download URL."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec
from litestar import Response, get, post

from loadtest.stub_ai.generation import BadInputError, GenRequest, Side, decode
from loadtest.stub_ai.images import StoredImage, to_base64
from loadtest.stub_ai.submissions import AnyRequest, Stub, Wire, image_response


class GenericBody(msgspec.Struct, kw_only=True):
    """``POST /generate``: only ``prompt`` is required; extra keys are ignored."""

    prompt: Annotated[str, msgspec.Meta(min_length=1)]
    negative_prompt: str = ""
    width: Side = 1024
    height: Side = 1024
    seed: int = 0
    quality: str = "hq"


def parse_generic(body: bytes) -> GenRequest:
    """The generic body (also runpod's ``input``) as a generation request."""
    return to_request(decode(body, GenericBody))


def to_request(body: GenericBody) -> GenRequest:
    """A validated generic body as a generation request."""
    if not body.prompt.strip():
        raise BadInputError("prompt must not be blank")
    return GenRequest(body.prompt, body.negative_prompt, body.width, body.height, body.seed)


def error(status: int, message: str) -> Response[Any]:
    """The proxy's error body: ``{"error": "..."}``."""
    return Response({"error": message}, status_code=status)


WIRE = Wire("generic", error)


@post("/generate", status_code=200)
async def generate_png(request: AnyRequest, stub: Stub) -> Response[Any]:
    """Answer with the PNG bytes."""
    result = await stub.generate(request, WIRE, parse_generic)
    return result if isinstance(result, Response) else image_response(result.image)


@post("/generate/base64", status_code=200)
async def generate_base64(request: AnyRequest, stub: Stub) -> Response[Any]:
    """Answer ``{"image": <base64 PNG>, "seed": n}``."""
    result = await stub.generate(request, WIRE, parse_generic)
    if isinstance(result, Response):
        return result
    return Response({"image": to_base64(result.image.body), "seed": result.request.seed})


@post("/generate/url", status_code=200)
async def generate_url(request: AnyRequest, stub: Stub) -> Response[Any]:
    """Answer ``{"url": ...}``; the image waits at ``/stub/images/<token>.png``."""
    result = await stub.generate(request, WIRE, parse_generic, by_url=True)
    if isinstance(result, Response):
        return result
    name = f"{uuid.uuid4().hex}.png"
    stub.images.put(name, result.image)
    return Response({"url": f"{request.base_url}stub/images/{name}"})


@get("/stub/images/{name:str}")
async def download(request: AnyRequest, stub: Stub, name: str) -> Response[Any]:
    """A stored image. Like a signed storage link, it needs no API key."""
    stub.stats.poll(WIRE.protocol)
    image: StoredImage | None = stub.images.get(name)
    if image is None:
        return error(404, f"no image {name!r} (unknown, or no longer kept)")
    return image_response(image)


ROUTES = [generate_png, generate_base64, generate_url, download]
