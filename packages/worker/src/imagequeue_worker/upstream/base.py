"""What every upstream AI adapter takes and gives, and the quality mapping per backend."""

from __future__ import annotations

from typing import Protocol

import msgspec

from imagequeue_common.settings import Quality

STEPS: dict[Quality, int] = {"hq": 35, "standard": 25, "draft": 12}
"""Sampler steps for the diffusion backends (automatic1111, comfyui, runpod)."""
OPENAI_QUALITY: dict[Quality, str] = {"hq": "high", "standard": "medium", "draft": "low"}
DALLE_QUALITY: dict[Quality, str] = {"hq": "hd", "standard": "standard", "draft": "standard"}


class ImageRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One image to make; ``request_id`` (our job id) is sent as ``X-Request-ID``."""

    prompt: str
    negative_prompt: str
    width: int
    height: int
    seed: int
    quality: Quality
    request_id: str

    def sd_fields(self) -> dict[str, object]:
        """The fields every Stable Diffusion style API takes under these names."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "width": self.width,
            "height": self.height,
            "seed": self.seed,
        }


class Watch(Protocol):
    """What a polling adapter may ask of the job it works for."""

    async def cancel_requested(self) -> bool:
        """True once the job was cancelled (the adapter then cancels upstream too)."""
        ...


class ImageBackend(Protocol):
    """An upstream AI API: one call in, the image's bytes out (not yet validated).

    Raises ``UpstreamRetryableError``, ``UpstreamTerminalError``, ``InvalidImageError`` or
    ``JobCancelledError``; never a bare ``httpx`` error.
    """

    name: str

    async def generate(self, request: ImageRequest, watch: Watch) -> bytes:
        """Ask for ``request``'s image and return its bytes."""
        ...
