"""Admin reads and operations on one queue, for the dashboard.

Lists and search read the state sets and the per-user / per-ref indexes, then every job's
hash and payload in one pipeline; ``promote`` and ``remove`` are Lua scripts like every other
state change. Nothing here is on the workers' path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from redis.exceptions import RedisError, ResponseError

from imagequeue_common.contracts import JobState
from imagequeue_common.errors import InvalidJobError, JobNotFoundError, JobStateError
from imagequeue_common.queue.jobs import Job
from imagequeue_common.queue.ledger import JobLedger

MAX_PAGE = 1000
"""Most jobs one ``list_jobs`` or ``search`` call returns."""
MINUTES_KEPT = 60
"""How far back ``throughput_by_minute`` can look (the ``tpm`` hash keeps one hour)."""

_STREAM_CHUNK = 1000
_CLOCK_SLACK_MS = 1000
"""Stream ids may lag the script's ``TIME`` a little (Redis 7.2 freezes command time)."""


class TimelineEntry(msgspec.Struct, frozen=True):
    """One event of a job from the queue's stream."""

    at_ms: int
    """Redis server time of the event (the stream entry id's milliseconds)."""
    event: str
    """``waiting``, ``active``, ``progress``, ``delayed``, ``completed``, ``failed``, ..."""
    fields: dict[str, str]
    """The event's other fields (``attempt``, ``error``, ``progress``, ``promoted``, ...)."""
    entry_id: str
    """The stream entry id (``<ms>-<n>``), unique and ordered."""


class MinuteCount(msgspec.Struct, frozen=True):
    """Completions and dead letters in one minute."""

    minute_start_ms: int
    completed: int
    failed: int


class RateUsage(msgspec.Struct, frozen=True):
    """Starts inside the current sliding window of the global rate limit."""

    used: int
    max: int
    """``RATE_LIMIT_MAX``; 0 means no limit (and then ``used`` is 0)."""
    window_ms: int


class RedisHealth(msgspec.Struct, frozen=True):
    """What ``INFO`` says of the Redis server; ``up=False`` and zeros when it did not answer."""

    up: bool
    version: str = ""
    used_memory_bytes: int = 0
    maxmemory_bytes: int = 0
    """0 means no limit."""
    maxmemory_policy: str = ""
    """``noeviction`` is what a queue needs; '' when neither INFO nor CONFIG told."""
    uptime_s: int = 0
    connected_clients: int = 0


class QueueAdmin:
    """Dashboard reads and admin operations on one queue, over its :class:`JobLedger`."""

    def __init__(self, ledger: JobLedger) -> None:
        self.ledger = ledger
        self.keys = ledger.keys
        self.client = ledger.client

    async def count(self, state: JobState) -> int:
        """Jobs in ``state`` now (O(1))."""
        return int(await self.client.zcard(self.keys.state_set(state)))

    async def list_jobs(self, state: JobState, offset: int = 0, limit: int = 20) -> list[Job]:
        """One page of the jobs in ``state``: waiting in claim order, active by lease
        deadline, delayed soonest due first, finished ones newest first.

        A job that leaves the state between the two reads is still shown (as it is now);
        one deleted meanwhile is left out, so a page may be short.
        """
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise InvalidJobError(f"need offset >= 0 and 1 <= limit <= {MAX_PAGE}")
        key, end = self.keys.state_set(state), offset + limit - 1
        # The reply type of redis-py is a union over client options; this client decodes.
        ids: list[str]
        if state.is_final:  # newest first
            ids = await self.client.zrevrange(key, offset, end)  # type: ignore[assignment]
        else:
            ids = await self.client.zrange(key, offset, end)  # type: ignore[assignment]
        return await self.load(ids)

    async def search(self, text: str, limit: int = 50) -> list[Job]:
        """Jobs matching ``text``: the job with that id first, then that user's jobs, then
        the jobs with that ref (each newest first), without duplicates."""
        text = text.strip()
        if not text or limit < 1:
            return []
        limit, k = min(limit, MAX_PAGE), self.keys
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.exists(k.job(text))
            pipe.zrevrange(k.by_user(text), 0, limit - 1)
            pipe.zrevrange(k.by_ref(text), 0, limit - 1)
            exists, by_user, by_ref = await pipe.execute()
        ids = ([text] if exists else []) + list(by_user) + list(by_ref)
        return await self.load(list(dict.fromkeys(ids))[:limit])

    async def load(self, ids: Sequence[str]) -> list[Job]:
        """The jobs of ``ids`` that still exist, in that order."""
        if not ids:
            return []
        async with self.client.pipeline(transaction=True) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
                pipe.get(self.keys.data(job_id))
            replies = await pipe.execute()
        return [
            Job.from_hash(job_id, fields, payload or "")
            for job_id, fields, payload in zip(ids, replies[0::2], replies[1::2], strict=True)
            if fields  # deleted (cleaned, removed) since its id was read
        ]

    async def promote(self, job_id: str) -> None:
        """Move a delayed job to waiting now, as its user's newest job at its priority;
        raises :class:`JobNotFoundError` or :class:`JobStateError` (not delayed)."""
        k = self.keys
        answer = await self.ledger.scripts.call(
            "promote",
            [k.waiting, k.delayed, k.events, k.marker, k.meta],
            [k.prefix, self.ledger.settings.events_maxlen, job_id, self.ledger.settings.fairness],
        )
        _check(job_id, answer, "promoted", "promote")

    async def remove(self, job_id: str) -> None:
        """Delete a job that is not active, with its payload and index entries; raises
        :class:`JobNotFoundError`, or :class:`JobStateError` for an active job (cancel it
        first)."""
        k = self.keys
        answer = await self.ledger.scripts.call(
            "remove",
            [k.waiting, k.delayed, k.completed, k.failed, k.cancelled, k.events, k.users],
            [k.prefix, self.ledger.settings.events_maxlen, job_id],
        )
        _check(job_id, answer, "removed", "remove")

    async def timeline(self, job_id: str) -> list[TimelineEntry]:
        """The job's events still in the capped stream, oldest first; raises
        :class:`JobNotFoundError` when neither the job nor any event of it is left."""
        k = self.keys
        created = await self.client.hget(k.job(job_id), "created_at")
        # The job's events all follow its creation: no need to read the stream before it.
        start = f"{max(int(created) - _CLOCK_SLACK_MS, 0)}-0" if created else "-"
        entries: list[TimelineEntry] = []
        while True:
            chunk: list[tuple[str, dict[str, str]]] = await self.client.xrange(  # type: ignore[assignment]
                k.events, min=start, count=_STREAM_CHUNK
            )
            entries += [_entry(eid, f) for eid, f in chunk if f.get("job") == job_id]
            if len(chunk) < _STREAM_CHUNK:
                break
            start = "(" + chunk[-1][0]
        if not entries and created is None:
            raise JobNotFoundError(job_id)
        return entries

    async def throughput_by_minute(self, minutes: int = MINUTES_KEPT) -> list[MinuteCount]:
        """Completions and dead letters per minute for the last ``minutes`` minutes
        (the current one included), oldest first, minutes without any as zeros."""
        if not 1 <= minutes <= MINUTES_KEPT:
            raise InvalidJobError(f"minutes must be from 1 to {MINUTES_KEPT}, got {minutes}")
        seconds, _ = await self.client.time()
        now_minute = int(seconds) // 60
        span = range(now_minute - minutes + 1, now_minute + 1)
        fields = [f"{kind}:{m}" for m in span for kind in ("c", "f")]
        values = [int(v or 0) for v in await self.client.hmget(self.keys.tpm, fields)]
        return [
            MinuteCount(minute_start_ms=m * 60_000, completed=c, failed=f)
            for m, c, f in zip(span, values[0::2], values[1::2], strict=True)
        ]

    async def rate_usage(self) -> RateUsage:
        """Claims started inside the current window of the global rate limit (read-only)."""
        s = self.ledger.settings
        used = await self.ledger.scripts.call(
            "rate", [self.keys.limiter], [s.rate_limit_duration_ms]
        )
        return RateUsage(used=int(used), max=s.rate_limit_max, window_ms=s.rate_limit_duration_ms)

    async def redis_health(self) -> RedisHealth:
        """The server's version, memory, policy, uptime and clients; never raises: a server
        that does not answer is ``up=False``."""
        try:
            info: dict[str, Any] = await self.client.info()
            policy = info.get("maxmemory_policy")
            if policy is None:  # older servers and some managed ones leave it out of INFO
                policy = await self._config_policy()
        except (RedisError, OSError):
            return RedisHealth(up=False)
        return RedisHealth(
            up=True,
            version=str(info.get("redis_version", "")),
            used_memory_bytes=int(info.get("used_memory", 0)),
            maxmemory_bytes=int(info.get("maxmemory", 0)),
            maxmemory_policy=str(policy),
            uptime_s=int(info.get("uptime_in_seconds", 0)),
            connected_clients=int(info.get("connected_clients", 0)),
        )

    async def _config_policy(self) -> str:
        try:
            reply: dict[str, str] = await self.client.config_get("maxmemory-policy")  # type: ignore[assignment]
        except ResponseError:  # CONFIG renamed or disabled (managed Redis): not knowable
            return ""
        return str(reply.get("maxmemory-policy", ""))


def _check(job_id: str, answer: str, done: str, operation: str) -> None:
    if answer == "missing":
        raise JobNotFoundError(job_id)
    if answer != done:
        raise JobStateError(job_id, answer, operation)


def _entry(entry_id: str, fields: dict[str, str]) -> TimelineEntry:
    rest = {name: value for name, value in fields.items() if name not in ("job", "event")}
    return TimelineEntry(
        at_ms=int(entry_id.split("-", 1)[0]),
        event=fields.get("event", ""),
        fields=rest,
        entry_id=entry_id,
    )
