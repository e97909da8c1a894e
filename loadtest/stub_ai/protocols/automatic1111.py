"""AUTOMATIC1111's web UI API: ``POST /sdapi/v1/txt2img``."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Response, post

from loadtest.stub_ai.generation import GenRequest, Side, decode
from loadtest.stub_ai.images import to_base64
from loadtest.stub_ai.submissions import AnyRequest, Stub, Wire


class Txt2ImgBody(msgspec.Struct, kw_only=True):
    """The fields the stub reads; A1111 takes many more, and so do we (ignored)."""

    prompt: str = ""
    negative_prompt: str = ""
    width: Side = 512
    height: Side = 512
    seed: int = -1
    steps: int = 20
    cfg_scale: float = 7.0
    sampler_name: str = "Euler a"


def parse_txt2img(body: bytes) -> GenRequest:
    """A txt2img body as a generation request (``seed`` -1 means random, as in A1111)."""
    asked = decode(body, Txt2ImgBody)
    return GenRequest(asked.prompt, asked.negative_prompt, asked.width, asked.height, asked.seed)


def error(status: int, message: str) -> Response[Any]:
    """The body A1111's API exception middleware answers with."""
    body = {"error": "HTTPException", "detail": message, "body": "", "errors": message}
    return Response(body, status_code=status)


WIRE = Wire("automatic1111", error)


@post("/sdapi/v1/txt2img", status_code=200)
async def txt2img(request: AnyRequest, stub: Stub) -> Response[Any]:
    """Answer ``{"images": [<base64 PNG>], "parameters": {...}, "info": "<json>"}``."""
    result = await stub.generate(request, WIRE, parse_txt2img)
    if isinstance(result, Response):
        return result
    sent = msgspec.json.decode(await request.body(), type=dict[str, Any])
    parameters = {**sent, **msgspec.structs.asdict(decode(await request.body(), Txt2ImgBody))}
    asked = result.request
    info = {
        "prompt": asked.prompt,
        "all_prompts": [asked.prompt],
        "negative_prompt": asked.negative_prompt,
        "all_negative_prompts": [asked.negative_prompt],
        "seed": asked.seed,
        "all_seeds": [asked.seed],
        "width": asked.width,
        "height": asked.height,
        "sampler_name": parameters["sampler_name"],
        "cfg_scale": parameters["cfg_scale"],
        "steps": parameters["steps"],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
        "sd_model_name": "stub",
    }
    return Response(
        {
            "images": [to_base64(result.image.body)],
            "parameters": parameters,
            "info": msgspec.json.encode(info).decode(),
        }
    )


ROUTES = [txt2img]
