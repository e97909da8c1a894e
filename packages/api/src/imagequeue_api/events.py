"""Live job events for Server-Sent Events, read from the engine's Redis stream.

One reader per API process follows the queue's event stream (``XREAD BLOCK``) and hands each
entry to the subscribers of its job, so a thousand clients following their jobs cost one
Redis connection, not a thousand; and any API process can serve any job's stream. The
reader follows only while someone is subscribed: an API process nobody watches through
does not read and decode every event of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from imagequeue_common.outage import RedisOutage

log = logging.getLogger("imagequeue.api")
BLOCK_MS = 5000
QUEUE_SIZE = 256

Event = dict[str, str]


class EventHub:
    """Fans the queue's event stream out to per-job subscribers."""

    def __init__(
        self, redis: Redis, stream: str, *, block_ms: int = BLOCK_MS, retry_s: float = 1.0
    ) -> None:
        self.redis = redis
        self._outage = RedisOutage("event stream", log, retry_s=retry_s)
        self.stream = stream
        self.block_ms = block_ms
        self._subscribers: dict[str, set[asyncio.Queue[Event]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._wanted = asyncio.Event()  # someone subscribed
        self._following = asyncio.Event()  # the reader follows the stream now

    def start(self) -> None:
        """Start the reader (it follows the stream while there are subscribers)."""
        self._task = asyncio.create_task(self._run(), name="imagequeue-event-hub")

    async def stop(self) -> None:
        """Stop following (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Queue[Event]]:
        """A queue receiving ``job_id``'s events while the ``with`` block lasts.

        Entered only once the reader follows the stream from a point no later than now:
        what happened before shows in the job's state, read after entering.
        """
        queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.setdefault(job_id, set()).add(queue)
        try:
            self._wanted.set()
            await self._following.wait()
            yield queue
        finally:
            subscribers = self._subscribers.get(job_id, set())
            subscribers.discard(queue)
            if not subscribers:
                self._subscribers.pop(job_id, None)

    async def _run(self) -> None:
        while True:
            await self._wanted.wait()
            last = None
            with self._outage:
                last = await self._newest_id()
            if last is None:
                await asyncio.sleep(self._outage.retry_s)
                continue
            self._following.set()
            await self._follow(last)
            # No await between the last check for subscribers and these: a subscriber
            # arriving from here on waits for the next start.
            self._following.clear()
            self._wanted.clear()

    async def _newest_id(self) -> str:
        newest = await self.redis.xrevrange(self.stream, count=1)
        return str(newest[0][0]) if newest else "0-0"

    async def _follow(self, last: str) -> None:
        while self._subscribers:
            reply = None
            with self._outage:
                reply = await self.redis.xread({self.stream: last}, block=self.block_ms, count=500)
            if self._outage.failed_last:
                await asyncio.sleep(self._outage.retry_s)
                continue
            streams: list[tuple[str, list[tuple[str, Event]]]] = reply or []  # type: ignore[assignment]
            for _, entries in streams:
                for entry_id, fields in entries:
                    last = entry_id
                    self._dispatch(fields)

    def _dispatch(self, fields: Event) -> None:
        for queue in self._subscribers.get(fields.get("job", ""), ()):
            if queue.full():
                # A slow client misses intermediate progress; it re-reads the job's state.
                queue.get_nowait()
            queue.put_nowait(fields)
