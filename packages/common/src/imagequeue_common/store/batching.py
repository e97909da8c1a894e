"""Group commit: items submitted while a batch is being written go together in the next."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from imagequeue_common.errors import StoreUnavailableError

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

WriteBatch = Callable[[list[T]], Awaitable[list[E | None]]]


class GroupCommit(Generic[T, E]):
    """Feeds ``write`` batches of submitted items, one batch at a time.

    ``write`` answers one error (or None) per item; an exception it raises fails the whole
    batch. A lone item goes out at once; under load, each batch is what arrived while the
    previous one was being written, so batches grow exactly as fast as writes fall behind.
    """

    def __init__(self, write: WriteBatch[T, E]) -> None:
        self._write = write
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Write ``item`` with its batch; raises its error. A caller cancelled while waiting
        does not take its item back: it may already be written."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((item, future))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    results: list[BaseException | None] = list(
                        await self._write([item for item, _ in batch])
                    )
                except Exception as exc:  # noqa: BLE001 - handed to every caller
                    results = [exc] * len(batch)
                except BaseException:  # cancelled mid-write (shutdown): nobody waits forever
                    self._queue[:0] = batch
                    raise
                for (_, future), error in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._task = None
            for _, future in self._queue:  # only when cancelled mid-write (shutdown)
                if not future.done():
                    future.set_exception(StoreUnavailableError("the store closed mid-write"))
            self._queue = []
