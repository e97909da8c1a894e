"""Checking what an AI API answered: a real PNG, JPEG or WebP image, stored as PNG.

Upstreams sometimes answer 200 with a truncated transfer or a proxy's HTML error page;
the only reliable check is to decode the whole image. Pillow does that here, with a
pixel cap so a hostile answer cannot make a worker allocate gigabytes.
"""

from __future__ import annotations

import io
import warnings

import msgspec
from PIL import Image, UnidentifiedImageError

ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
MAX_PIXELS = 4096 * 4096


class CheckedImage(msgspec.Struct, frozen=True):
    """A decoded image: its source format, size, and PNG bytes to store."""

    source_format: str
    width: int
    height: int
    png: bytes


class ImageDecodeError(ValueError):
    """The bytes are not a complete PNG, JPEG or WebP image; the message says why."""


def check_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> CheckedImage:
    """Decode ``data`` fully; return it as PNG (unchanged when it already is one).

    Raises :class:`ImageDecodeError` for an empty body, an unknown or unaccepted format,
    too many pixels, or a truncated or corrupt image.
    """
    if not data:
        raise ImageDecodeError("empty body")
    try:
        with warnings.catch_warnings():
            # Pillow warns, then raises, on huge images; we check the size ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                fmt = image.format or "unknown"
                if fmt not in ACCEPTED_FORMATS:
                    raise ImageDecodeError(f"{fmt} is not PNG, JPEG or WebP")
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageDecodeError(f"{width}x{height} is more than {max_pixels} pixels")
                image.load()  # decodes every byte: a truncated image fails here
                png = data if fmt == "PNG" else _to_png(image)
    except UnidentifiedImageError:
        raise ImageDecodeError(f"not an image ({_describe(data)})") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageDecodeError):
            raise
        raise ImageDecodeError(f"corrupt or truncated image: {exc}") from None
    return CheckedImage(fmt, width, height, png)


def _to_png(image: Image.Image) -> bytes:
    if image.mode not in ("RGB", "RGBA", "L", "LA", "P"):
        image = image.convert("RGBA")
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=3)
    return out.getvalue()


def _describe(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "an HTML page"
    if head.startswith((b"{", b"[")):
        return "JSON"
    return f"{len(data)} bytes starting {data[:8].hex()}"
