"""The engine's Lua scripts: read from ``lua/`` once, then called by SHA.

Each script is prefixed with ``_lib.lua`` (shared helpers). redis-py's ``Script`` calls
``EVALSHA`` and loads the script again only when the server answers ``NOSCRIPT`` (a restart).

:meth:`Scripts.call_coalesced` sends the calls made in one turn of the event loop as one
pipeline: under many concurrent callers (the API creating characters) that is one write,
one read and one pooled connection for the lot instead of per call, where redis-py's
per-command overhead costs more than the script itself.
"""

from __future__ import annotations

import asyncio
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

_Call = tuple[str, list[str], list[Any], "asyncio.Future[Any]"]

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
        self._client = client
        self._scripts = {name: client.register_script(script_source(name)) for name in SCRIPT_NAMES}
        self._pending: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name`` (EVALSHA, loading it first if the server lost it)."""
        script: AsyncScript = self._scripts[name]
        return await script(keys=keys, args=args)

    async def call_coalesced(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """:meth:`call`, sent together with the other calls of this event-loop turn.

        Each call still runs atomically on its own, and its reply or error is its own. A
        caller cancelled while waiting does not take its call back: it may already be sent.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((name, keys, args, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)  # a reference until it is done
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for name, keys, args, _ in batch:
                    pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every call in it did
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (name, keys, args, future), sent in zip(batch, replies, strict=True):
            reply = sent
            if isinstance(sent, NoScriptError):  # the server lost its scripts (a restart)
                try:
                    reply = await self.call(name, keys, args)
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    reply = exc
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
