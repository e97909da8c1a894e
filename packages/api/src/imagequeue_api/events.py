"""Live job events for Server-Sent Events, read from the engine's Redis stream.

One reader per API process follows the queue's event stream (``XREAD BLOCK``) and hands each
entry to the subscribers of its job, so a thousand clients following their jobs cost one
Redis connection, not a thousand; and any API process can serve any job's stream. The
reader follows only while someone is subscribed: an API process nobody watches through
does not read and decode every event of the queue.

Every entry keeps its stream id, which the SSE route sends as the event's ``id:``: a client
that reconnects with ``Last-Event-ID`` gets what it missed from :meth:`EventHub.replay`.
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
Entry = tuple[str, Event]
"""A stream entry: its id (``<ms>-<seq>``) and its fields."""
REPLAY_PAGE = 1000


class EventHub:
    """Fans the queue's event stream out to per-job subscribers."""

    def __init__(
        self, redis: Redis, stream: str, *, block_ms: int = BLOCK_MS, retry_s: float = 1.0,
        replay_max: int = 10_000,
    ) -> None:  # fmt: skip
        self.redis = redis
        self._outage = RedisOutage("event stream", log, retry_s=retry_s)
        self.stream = stream
        self.block_ms = block_ms
        self.replay_max = replay_max
        self.position = "0-0"
        """The id of the last entry the reader took (everything up to it is handed out)."""
        self._subscribers: dict[str, set[asyncio.Queue[Entry]]] = {}
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
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Queue[Entry]]:
        """A queue receiving ``job_id``'s events while the ``with`` block lasts.

        Entered only once the reader follows the stream from a point no later than now:
        what happened before shows in the job's state, read after entering.
        """
        queue: asyncio.Queue[Entry] = asyncio.Queue(QUEUE_SIZE)
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
            self.position = last
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
                    last = self.position = entry_id
                    self._dispatch(entry_id, fields)

    def _dispatch(self, entry_id: str, fields: Event) -> None:
        for queue in self._subscribers.get(fields.get("job", ""), ()):
            if queue.full():
                # A slow client misses intermediate progress; it re-reads the job's state.
                queue.get_nowait()
            queue.put_nowait((entry_id, fields))

    async def replay(self, job_id: str, after: str) -> list[Entry]:
        """``job_id``'s entries after id ``after``, oldest first (what a client missed).

        One pass over the stream from ``after``: at most ``replay_max`` entries are read
        (the stream's cap), so an id from long ago costs no more than the whole stream.
        """
        found: list[Entry] = []
        start, read = next_id(after), 0
        while read < self.replay_max:
            want = min(REPLAY_PAGE, self.replay_max - read)
            page: list[Entry] = await self.redis.xrange(  # type: ignore[assignment]
                self.stream, min=start, max="+", count=want
            )
            read += len(page)
            found += [(entry_id, f) for entry_id, f in page if f.get("job") == job_id]
            if len(page) < want:
                break
            start = next_id(page[-1][0])
        return found


def parse_id(text: str) -> tuple[int, int] | None:
    """A stream id as (ms, seq), or None when ``text`` is not one."""
    ms, dash, seq = text.partition("-")
    if not (dash and ms.isdigit() and seq.isdigit() and len(ms) <= 20 and len(seq) <= 20):
        return None
    return int(ms), int(seq)


def next_id(entry_id: str) -> str:
    """The smallest id after ``entry_id`` (XRANGE's exclusive ``(`` needs Redis 6.2)."""
    ms, seq = parse_id(entry_id) or (0, 0)
    return f"{ms}-{seq + 1}"
