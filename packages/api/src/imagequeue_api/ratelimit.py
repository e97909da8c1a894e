"""Per-user request rate of the HTTP API: at most ``per_second`` requests in any second.

A sliding-window log in Redis, checked and updated by one Lua script (one round trip), so
every API process sharing the Redis counts against the same window. Layout::

    <ns>:{<queue>}:ratelimit:<user_id>   zset of the user's accepted request times (us)
"""

from __future__ import annotations

from redis.asyncio import Redis

from imagequeue_api.apikeys import validate_user_id
from imagequeue_api.scripts import register
from imagequeue_common.queue.keys import QueueKeys

WINDOW_MS = 1000


class RequestLimiter:
    """At most ``per_second`` accepted requests per user in any 1 s window; 0 disables it."""

    def __init__(self, redis: Redis, queue: str, namespace: str = "iq", *, per_second: int) -> None:
        if per_second < 0:
            raise ValueError(f"per_second must be >= 0, got {per_second}")
        self._prefix = QueueKeys.for_queue(queue, namespace).request_limits
        self._per_second = per_second
        self._script = register(redis, "request_limit")

    @property
    def enabled(self) -> bool:
        """Whether requests are limited at all."""
        return self._per_second > 0

    async def hit(self, user_id: str) -> float | None:
        """Count one request of ``user_id``: ``None`` if allowed, else seconds to wait.

        The wait (> 0, at most 1 s) suits a ``Retry-After`` header once rounded up. A refused
        request is not counted. With the limit disabled, Redis is not called.
        """
        if not self.enabled:
            return None
        key = self._prefix + validate_user_id(user_id)
        wait_us = int(await self._script(keys=[key], args=[self._per_second, WINDOW_MS]))
        return wait_us / 1_000_000 if wait_us > 0 else None
