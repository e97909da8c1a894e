"""Real PNGs drawn from the prompt and seed, the invalid variants, and a bounded image store."""

from __future__ import annotations

import base64
import functools
import io
import random
from collections import OrderedDict
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont

from loadtest.stub_ai.config import InvalidKind
from loadtest.stub_ai.generation import MAX_SIDE

PNG = "image/png"
HTML = "text/html"
# What a reverse proxy in front of a GPU box answers when the box is gone, with a 200.
HTML_ERROR_PAGE = b"""<!DOCTYPE html>
<html><head><title>502 Bad Gateway</title></head>
<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>
"""


class StoredImage(NamedTuple):
    """Bytes to serve where an image is expected, and their content type."""

    body: bytes
    media_type: str

    @property
    def is_html(self) -> bool:
        """True for the proxy error page, which replaces a whole response."""
        return self.media_type == HTML


def render_png(prompt: str, seed: int, width: int, height: int) -> bytes:
    """A PNG of ``width`` x ``height`` (capped at 2048), the same for the same arguments."""
    width, height = min(width, MAX_SIDE), min(height, MAX_SIDE)
    rng = random.Random(seed)  # noqa: S311  (a picture, not a secret)
    image = Image.new("RGB", (width, height), _colour(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 6)):
        x0, x1 = sorted(rng.randrange(width) for _ in range(2))
        y0, y1 = sorted(rng.randrange(height) for _ in range(2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=_colour(rng))
    words = prompt.split()[:8]
    lines = [" ".join(words[:4]), " ".join(words[4:])]
    size = max(10, min(width, height) // 16)
    draw.multiline_text(
        (size // 2, size // 2), "\n".join(lines).strip(), fill=(255, 255, 255), font=_font(size),
        stroke_width=max(1, size // 12), stroke_fill=(0, 0, 0),
    )  # fmt: skip
    buffer = io.BytesIO()
    # compress_level=1: encoding time matters more than bytes on a loopback stub.
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def invalid_image(png: bytes, kind: InvalidKind) -> StoredImage:
    """What a broken upstream serves instead of ``png``."""
    if kind == "html":
        return StoredImage(HTML_ERROR_PAGE, HTML)
    return StoredImage(png[: len(png) // 2], PNG)


def to_base64(data: bytes) -> str:
    """``data`` as the base64 text JSON protocols carry images in."""
    return base64.b64encode(data).decode("ascii")


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


class ImageStore:
    """The last ``keep`` images served by URL, by name; older ones are forgotten."""

    def __init__(self, keep: int = 2000) -> None:
        self._keep = keep
        self._images: OrderedDict[str, StoredImage] = OrderedDict()

    def put(self, name: str, image: StoredImage) -> None:
        """Store ``image`` under ``name``, dropping the oldest beyond ``keep``."""
        self._images[name] = image
        while len(self._images) > self._keep:
            self._images.popitem(last=False)

    def get(self, name: str) -> StoredImage | None:
        """The image stored under ``name``, if still kept."""
        return self._images.get(name)
