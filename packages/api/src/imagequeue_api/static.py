"""Static files (the images, the dashboard's scripts) behind a check Litestar lacks: a path
holding a NUL is a 404, not the ``ValueError: embedded null byte`` (a 500) the file system
raises for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from litestar import Request, Router
from litestar.static_files import create_static_files_router

from imagequeue_api.problems import Problem


async def refuse_nul(request: Request[Any, Any, Any]) -> None:
    """``before_request``: no file's name holds a NUL, so no such file."""
    if "\x00" in request.url.path:
        raise Problem(404, "No such resource.")


def static_files(path: str, directory: Path | str, name: str) -> Router:
    """Files under ``directory`` served at ``path``."""
    return create_static_files_router(path, [directory], name=name, before_request=refuse_nul)
