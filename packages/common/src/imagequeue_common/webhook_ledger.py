"""What webhook deliveries keep in Redis beside their jobs: the order of one job's events
(a chain per job), each delivery's attempts, the endpoints' health, counts by outcome.

Deliveries are jobs of their own queue (``Settings.webhook_queue``); these keys live under
that queue's prefix (one Redis Cluster slot):

- ``hchain:<job>`` list and ``hchainb:<job>`` hash — the job's deliveries in event order;
  only the head is a queued job. When it ends (delivered, gone, refused, dead-lettered),
  the next one is queued. A ``completed`` therefore never overtakes its ``started``.
  Finished ids stay in the hash with an empty body, so an outbox entry handed out twice
  (a dispatcher killed before its ack) is not delivered again.
- ``hlog:<msg id>`` list — the attempts (time, outcome, status, answer's start, ms).
- ``hep:<owner>:<digest>`` hash — one owner's endpoint: failing since when, the last
  error, and when (and why) it was disabled. ``heps:<owner>`` set — the owner's endpoints.
- ``houtcomes`` hash — attempts by outcome, for ``/metrics``.
"""

from __future__ import annotations

import hashlib
import time
from typing import Literal

import msgspec
from redis.asyncio import Redis

from imagequeue_common.queue.fairness import NO_DEADLINES
from imagequeue_common.queue.keys import QueueKeys
from imagequeue_common.settings import Settings, replace
from imagequeue_common.webhooks import Delivery

Outcome = Literal["delivered", "gone", "refused", "retry", "disabled"]
KEEP_S = 30 * 86_400
"""How long a chain, an attempt log and an endpoint's record outlive their last change."""
ATTEMPTS_KEPT = 20

_CHAIN_ADD = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  redis.call('RPUSH', KEYS[1], ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return false end
return {head, redis.call('HGET', KEYS[2], head)}
"""
_CHAIN_NEXT = """
if redis.call('LINDEX', KEYS[1], 0) == ARGV[1] then
  redis.call('LPOP', KEYS[1])
  redis.call('HSET', KEYS[2], ARGV[1], '')
end
local head = redis.call('LINDEX', KEYS[1], 0)
if not head then return false end
return {head, redis.call('HGET', KEYS[2], head)}
"""
_FAILED = """
redis.call('HSETNX', KEYS[1], 'failing_since', ARGV[1])
redis.call('HSET', KEYS[1], 'url', ARGV[3], 'last_error', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], KEYS[1])
redis.call('EXPIRE', KEYS[2], ARGV[5])
local since = tonumber(redis.call('HGET', KEYS[1], 'failing_since'))
local fresh = redis.call('HEXISTS', KEYS[1], 'disabled_at') == 0
if fresh and tonumber(ARGV[1]) - since >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'disabled_at', ARGV[1], 'disabled_why', ARGV[4])
  return 1
end
return 0
"""


class AttemptRecord(msgspec.Struct, frozen=True):
    """One attempt of a delivery as its owner sees it."""

    at: float
    """When it ended (Unix seconds)."""
    attempt: int
    outcome: Outcome
    status: int | None
    detail: str
    elapsed_ms: int


class Endpoint(msgspec.Struct, frozen=True):
    """One owner's receiver URL and its health."""

    url: str
    failing_since: float | None
    """Every attempt has failed since then (None: the last one succeeded)."""
    last_error: str
    disabled_at: float | None
    disabled_why: str


def delivery_settings(settings: Settings) -> Settings:
    """The delivery queue's settings, from the image queue's: its own name, limit, slots
    and retries; no per-user quota, cap, deadline or admission limit (each delivery was
    made by an event of a job that was admitted)."""
    return replace(
        settings, queue_name=settings.webhook_queue,
        rate_limit_max=settings.webhook_rate_limit_max,
        worker_concurrency=settings.webhook_concurrency,
        job_retries=len(settings.webhook_schedule_ms), user_max_pending=0, user_max_active=0,
        start_deadline_s=NO_DEADLINES, max_queue_length=0, max_queue_wait_s=0,
    )  # fmt: skip


def endpoint_digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:32]


class WebhookLedger:
    """The webhook keys of one image queue (``queue`` is ``Settings.webhook_queue``)."""

    def __init__(self, redis: Redis, queue: str, namespace: str = "iq") -> None:
        self.redis = redis
        self.keys = QueueKeys.for_queue(queue, namespace)
        self._add = redis.register_script(_CHAIN_ADD)
        self._next = redis.register_script(_CHAIN_NEXT)
        self._failed = redis.register_script(_FAILED)

    def _chain(self, job_id: str) -> list[str]:
        p = self.keys.prefix
        return [f"{p}hchain:{job_id}", f"{p}hchainb:{job_id}"]

    async def chain_add(self, delivery: Delivery) -> Delivery | None:
        """Put ``delivery`` at the end of its job's chain (once); the chain's head, which
        is the one to queue now (it may be queued already: queueing is by its id)."""
        body = msgspec.json.encode(delivery).decode()
        head = await self._add(self._chain(delivery.job_id), [delivery.msg_id, body, KEEP_S])
        return _delivery(head)

    async def chain_next(self, delivery: Delivery) -> Delivery | None:
        """``delivery`` has ended: off its chain's head; the next one to queue, if any."""
        head = await self._next(self._chain(delivery.job_id), [delivery.msg_id])
        return _delivery(head)

    async def record(self, msg_id: str, record: AttemptRecord) -> None:
        """Keep one attempt's record and count its outcome."""
        key = f"{self.keys.prefix}hlog:{msg_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, msgspec.json.encode(record))
            pipe.ltrim(key, -ATTEMPTS_KEPT, -1)
            pipe.expire(key, KEEP_S)
            pipe.hincrby(f"{self.keys.prefix}houtcomes", record.outcome, 1)
            await pipe.execute()

    async def count_dead(self) -> None:
        """A delivery was dead-lettered after its last attempt."""
        await self.redis.hincrby(f"{self.keys.prefix}houtcomes", "dead", 1)

    async def attempts(self, msg_ids: list[str]) -> dict[str, list[AttemptRecord]]:
        """The attempt records of each delivery."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for msg_id in msg_ids:
                pipe.lrange(f"{self.keys.prefix}hlog:{msg_id}", 0, -1)
            replies = await pipe.execute()
        decode = msgspec.json.Decoder(AttemptRecord).decode
        return {m: [decode(r) for r in rows] for m, rows in zip(msg_ids, replies, strict=True)}

    async def outcomes(self) -> dict[str, int]:
        """Attempts by outcome (and ``dead``: deliveries dead-lettered) since the start."""
        raw = await self.redis.hgetall(f"{self.keys.prefix}houtcomes")
        return {str(k): int(v) for k, v in raw.items()}

    def _endpoint_keys(self, owner: str, url: str) -> list[str]:
        p = self.keys.prefix
        return [f"{p}hep:{owner}:{endpoint_digest(url)}", f"{p}heps:{owner}"]

    async def endpoint_failed(self, owner: str, url: str, why: str, disable_after_s: float,
                              now: float | None = None) -> bool:  # fmt: skip
        """Note a failed attempt; True when this one disabled the endpoint."""
        stamp = time.time() if now is None else now
        args: list[str | float] = [stamp, disable_after_s, url, why[:300], KEEP_S]
        return bool(await self._failed(self._endpoint_keys(owner, url), args))

    async def endpoint_ok(self, owner: str, url: str) -> None:
        """Note a delivered attempt: the endpoint is failing no more."""
        await self.redis.hdel(self._endpoint_keys(owner, url)[0], "failing_since")

    async def endpoint(self, owner: str, url: str) -> Endpoint | None:
        """One owner's endpoint, when it has ever failed (None: never, or long ago)."""
        fields: dict[str, str] = await self.redis.hgetall(self._endpoint_keys(owner, url)[0])  # type: ignore[assignment]
        return _endpoint(fields) if fields else None

    async def endpoints(self, owner: str) -> list[Endpoint]:
        """The owner's endpoints that have failed (recently), worst first."""
        keys = sorted(await self.redis.smembers(self._endpoint_keys(owner, "")[1]))
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            rows = await pipe.execute()
        found = [_endpoint(row) for row in rows if row]
        return sorted(found, key=lambda e: (e.disabled_at is None, e.failing_since or 1e18))

    async def enable(self, owner: str, url: str) -> bool:
        """Enable a disabled endpoint again (its failures forgotten); False when it was not
        disabled."""
        key = self._endpoint_keys(owner, url)[0]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hexists(key, "disabled_at")
            pipe.hdel(key, "disabled_at", "disabled_why", "failing_since")
            was, _ = await pipe.execute()
        return bool(was)


def _delivery(reply: list[str] | None) -> Delivery | None:
    if not reply or not reply[1]:
        return None
    return msgspec.json.decode(reply[1], type=Delivery)


def _endpoint(fields: dict[str, str]) -> Endpoint:
    def stamp(name: str) -> float | None:
        value = fields.get(name)
        return float(value) if value else None

    return Endpoint(url=fields.get("url", ""), failing_since=stamp("failing_since"),
                    last_error=fields.get("last_error", ""), disabled_at=stamp("disabled_at"),
                    disabled_why=fields.get("disabled_why", ""))  # fmt: skip
