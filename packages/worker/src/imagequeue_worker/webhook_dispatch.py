"""The outbox's reader: each entry (a job's event its webhook hears, written by the engine's
Lua scripts in the same step as the change) becomes a delivery.

Every webhook worker process runs one, in a consumer group of the image queue's
``outbox`` stream. An entry is acknowledged and deleted only after its delivery is on its
job's chain and the chain's head is queued; entries of a process killed before that are
taken over by another after ``LEASE_MS`` (``XAUTOCLAIM``). Doing an entry twice changes
nothing: the chain holds each ``webhook-id`` once, and a job is queued by its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from imagequeue_common.outage import RedisOutage
from imagequeue_common.queue.formatter import MsgspecFormatter
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.webhooks import Delivery, job_body, webhook_event
from imagequeue_worker.webhook_deliver import WebhookRuntime

log = logging.getLogger("imagequeue.webhooks")
GROUP = "dispatch"
BATCH = 100
BLOCK_MS = 5000


class Dispatcher:
    """Turns outbox entries into deliveries, until :meth:`stop`."""

    def __init__(self, runtime: WebhookRuntime, images: JobLedger, blocking: Redis,
                 consumer: str) -> None:  # fmt: skip
        self.runtime = runtime
        self.images = images
        self.blocking = blocking
        self.consumer = consumer
        self.outbox = images.keys.prefix + "outbox"
        self.idle_ms = images.settings.lease_ms
        self._formatter = MsgspecFormatter()
        self._outage = RedisOutage("webhook dispatch", log,
                                   retry_s=images.settings.redis_retry_ms / 1000)  # fmt: skip
        self._task: asyncio.Task[None] | None = None
        self._next_takeover = 0.0
        """When (``loop.time()``) to look for a dead consumer's entries again: every half
        of ``idle_ms``, not on every round."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        await self._ensure_group()
        while True:
            with self._outage:
                try:
                    await self.round()
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    await self._ensure_group()  # Redis lost it (restarted without its data)
            if self._outage.failed_last:
                await asyncio.sleep(self._outage.retry_s)

    async def _ensure_group(self) -> None:
        with self._outage:
            try:
                await self.images.client.xgroup_create(self.outbox, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def round(self, block_ms: int = BLOCK_MS) -> int:
        """Take over stale entries, else wait for new ones; dispatch them; how many."""
        client = self.images.client
        entries: list[tuple[str, dict[str, str]]] = []
        now = asyncio.get_running_loop().time()
        if now >= self._next_takeover:
            reply = await client.xautoclaim(self.outbox, GROUP, self.consumer, self.idle_ms,
                                            start_id="0-0", count=BATCH)  # fmt: skip
            entries = [e for e in reply[1] if e[1]]
            if len(entries) < BATCH:  # else more may wait: look again next round
                self._next_takeover = now + self.idle_ms / 2000
        if not entries:
            read = await self.blocking.xreadgroup(GROUP, self.consumer, {self.outbox: ">"},
                                                  count=BATCH, block=block_ms)  # fmt: skip
            entries = [e for _, stream in read for e in stream] if read else []  # type: ignore[union-attr, misc, str-unpack]
        for entry_id, fields in entries:
            await self.dispatch(entry_id, fields)
        ids = [entry_id for entry_id, _ in entries]
        if ids:
            await client.xack(self.outbox, GROUP, *ids)
            await client.xdel(self.outbox, *ids)
        return len(ids)

    async def dispatch(self, entry_id: str, fields: dict[str, str]) -> None:
        """One entry onto its job's chain; the chain's head queued."""
        job = await self.images.find_job(fields.get("job", ""))
        if job is None:
            return  # cleaned after retention, or removed: nothing to tell
        labels = self._formatter.loads(job.payload.encode()).labels
        url, key_id = str(labels.get("webhook", "")), str(labels.get("webhook_key", ""))
        if not url:
            return
        event = webhook_event(fields.get("event", ""))
        body = msgspec.json.encode(job_body(job, event)).decode()
        delivery = Delivery(msg_id=f"msg_{entry_id}", job_id=job.id, event=event, url=url,
                            key_id=key_id, owner=job.user, body=body)  # fmt: skip
        head = await self.runtime.ledger.chain_add(delivery)
        if head is not None:
            await self.runtime.queue(head)
