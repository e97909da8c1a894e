"""The engine's Lua scripts: read from ``lua/`` once, then called by SHA.

Each script is prefixed with ``_lib.lua`` (shared helpers). redis-py's ``Script`` calls
``EVALSHA`` and loads the script again only when the server answers ``NOSCRIPT`` (a restart).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

SCRIPT_NAMES = (
    "enqueue", "claim", "finish", "extend", "recover", "release", "progress",
    "cancel", "retry_failed", "clean", "stats", "hold", "permit", "promote", "remove", "rate",
)  # fmt: skip


@cache
def script_source(name: str) -> str:
    """The full text of script ``name``, shared helpers included."""
    folder = resources.files("imagequeue_common.queue") / "lua"
    lib = (folder / "_lib.lua").read_text(encoding="utf-8")
    return lib + "\n" + (folder / f"{name}.lua").read_text(encoding="utf-8")


class Scripts:
    """The engine's scripts registered on one client."""

    def __init__(self, client: Redis) -> None:
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    async def call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name`` (EVALSHA, loading it first if the server lost it)."""
        script: AsyncScript = self._scripts[name]
        return await script(keys=keys, args=args)
