"""The api's Lua scripts: read from ``lua/`` once, registered per client, called by SHA.

redis-py's ``Script`` sends ``EVALSHA`` and loads the script again only when the server
answers ``NOSCRIPT`` (after a restart), so registering costs no round trip.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


@cache
def script_source(name: str) -> str:
    """The text of ``lua/<name>.lua``."""
    return (resources.files("imagequeue_api") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def register(client: Redis, name: str) -> AsyncScript:
    """Script ``name`` bound to ``client`` (no Redis call until it is run)."""
    return client.register_script(script_source(name))
