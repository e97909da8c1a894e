"""Upstream answers are decoded in full: only complete PNG, JPEG or WebP images pass."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from imagequeue_common.images import ImageDecodeError, check_image


def _encode(fmt: str, size: tuple[int, int] = (32, 24)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(out, format=fmt)
    return out.getvalue()


def test_png_passes_unchanged() -> None:
    data = _encode("PNG")
    checked = check_image(data)
    assert (checked.source_format, checked.width, checked.height) == ("PNG", 32, 24)
    assert checked.png == data


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_jpeg_and_webp_are_stored_as_png(fmt: str) -> None:
    checked = check_image(_encode(fmt))
    assert checked.source_format == fmt
    with Image.open(io.BytesIO(checked.png)) as image:
        assert image.format == "PNG"
        assert image.size == (32, 24)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty body"),
        (b"<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", "an HTML page"),
        (b'{"error": "oops"}', "JSON"),
        (_encode("PNG", (64, 64))[:60], "corrupt or truncated"),
        (_encode("GIF"), "GIF is not PNG, JPEG or WebP"),
    ],
)
def test_broken_answers_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError, match=reason):
        check_image(data)


def test_truncated_half_png_is_refused() -> None:
    data = _encode("PNG", (256, 256))
    with pytest.raises(ImageDecodeError):
        check_image(data[: len(data) // 2])


def test_pixel_cap() -> None:
    with pytest.raises(ImageDecodeError, match="more than 100 pixels"):
        check_image(_encode("PNG", (20, 20)), max_pixels=100)
