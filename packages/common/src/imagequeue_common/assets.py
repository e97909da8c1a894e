"""Image files under ``ASSETS_DIR``: safe names, atomic writes, never outside the folder.

A file is ``characters/<slug>_<character_id>_<unix_ts>.png`` (the seed's
``aria_voss_693db123_1702567890.png``). The slug is derived from the character's name but
can only hold ``[a-z0-9_]``, so no user input ever reaches the file system raw. Bytes go to
a temporary file in the same folder, are flushed to disk, then linked to the final name:
a reader sees the whole image or nothing, and an existing image is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import re
import unicodedata
import uuid
from pathlib import Path

import msgspec

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
SLUG_MAX = 40
CHARACTERS = "characters"


class SavedImage(msgspec.Struct, frozen=True):
    """Where an image landed: its file and the URL it is served under."""

    path: str
    url: str
    filename: str


def slugify(name: str) -> str:
    """``"Aria Voss"`` → ``"aria_voss"``; only ``[a-z0-9_]``, never empty, at most 40 chars."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("_", ascii_name.lower()).strip("_")[:SLUG_MAX].strip("_")
    return slug or "character"


class AssetStore:
    """Writes character images under ``root`` and names their public URLs."""

    def __init__(self, root: str | os.PathLike[str], url_prefix: str = "/assets") -> None:
        self.root = Path(root).resolve()
        self.url_prefix = url_prefix.rstrip("/")

    def save_character_image(
        self, character_id: str, name: str, png: bytes, unix_ts: int
    ) -> SavedImage:
        """Write ``png`` for ``character_id`` atomically; returns its path and URL.

        Raises ``ValueError`` for a character id that is not a plain identifier.
        """
        if not _ID.match(character_id):
            raise ValueError(f"character id {character_id!r} is not a plain identifier")
        folder = self.root / CHARACTERS
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{uuid.uuid4().hex}.tmp"
        try:
            _write_synced(tmp, png)
            final = self._link_unique(tmp, f"{slugify(name)}_{character_id}_{unix_ts}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return SavedImage(str(final), f"{self.url_prefix}/{CHARACTERS}/{final.name}", final.name)

    def remove(self, filename: str) -> None:
        """Delete one of our images by its file name (a name of ours, never a path)."""
        if "/" in filename or "\\" in filename or filename.startswith("."):
            raise ValueError(f"{filename!r} is not an image file name")
        with contextlib.suppress(FileNotFoundError):
            (self.root / CHARACTERS / filename).unlink()

    def _link_unique(self, tmp: Path, stem: str) -> Path:
        # link() fails when the name exists, unlike rename(): two images of one character in
        # the same second get distinct names instead of one overwriting the other.
        for n in range(1, 1000):
            final = tmp.parent / (f"{stem}.png" if n == 1 else f"{stem}_{n}.png")
            if final.resolve().parent != tmp.parent.resolve():
                raise ValueError(f"{final} is outside {tmp.parent}")
            try:
                os.link(tmp, final)
            except FileExistsError:
                continue
            return final
        raise FileExistsError(f"no free file name for {stem}")


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
