"""A RunPod serverless handler for the tests, served by RunPod's own SDK:
``python tests/support/runpod_handler.py --rp_serve_api --rp_api_port <port>``.

The prompt's first word picks the answer (the pipeline's prompt starts with the character's
name, so a character called ``comfyui: Aria`` asks for worker-comfyui's shape):

- ``image:`` (or none): ``{"image": <base64 PNG>, "seed": n}``
- ``comfyui:``: worker-comfyui's ``{"images": [{"filename", "type": "base64", "data"}]}``
- ``base64:``: the bare base64 string
- ``data-url:``: a ``data:image/png;base64,...`` URL
- ``raise:``: raises ``ValueError`` echoing the prompt (RunPod reports the run FAILED)
- ``error:``: returns ``{"error": ...}``, the handler's own refusal (FAILED too)
"""

from __future__ import annotations

import base64
import io
from typing import Any

import runpod
from PIL import Image


def png(width: int, height: int, seed: int) -> bytes:
    """A plain PNG of the asked size, its colour from the seed."""
    colour = (seed % 251, seed // 251 % 251, seed // 63001 % 251)
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def handler(job: dict[str, Any]) -> object:
    """One run: the image in the shape the prompt names."""
    given = job["input"]
    prompt = str(given.get("prompt", ""))
    head, colon, _ = prompt.partition(":")
    shape = head.strip() if colon and len(head) < 12 else "image"
    if shape == "raise":
        raise ValueError(f"the handler cannot draw this: {prompt}")
    if shape == "error":
        return {"error": "the handler refused the input (content filter)"}
    seed = int(given.get("seed", 0))
    data = base64.b64encode(png(int(given["width"]), int(given["height"]), seed)).decode()
    if shape == "comfyui":
        return {"images": [{"filename": "ComfyUI_00001_.png", "type": "base64", "data": data}]}
    if shape == "base64":
        return data
    if shape == "data-url":
        return f"data:image/png;base64,{data}"
    return {"image": data, "seed": seed}


if __name__ == "__main__":
    runpod.serverless.start({"handler": handler})
