"""Short-lived tokens, each good for one job's event stream, for browsers.

A browser's ``EventSource`` cannot send an ``Authorization`` header, and an API key in a
URL would outlive the page that leaked it (history, proxies, referrers). So an
authenticated ``POST /api/v1/generations/{id}/events-token`` mints a random token worth
only ``GET`` of that job's events, for that job's owner, for ``EVENTS_TOKEN_TTL_S``
seconds. Redis keeps it under its SHA-256 (never the token itself) with that TTL, so every
API process accepts it and nothing outlives it.
"""

from __future__ import annotations

import hashlib
import secrets

from redis.asyncio import Redis

from imagequeue_common.queue.keys import QueueKeys

PREFIX = "iqe_"
_SEP = "\x1f"  # neither user ids nor job ids can hold it


class StreamTokens:
    """Mint and check job-scoped event-stream tokens."""

    def __init__(self, redis: Redis, keys: QueueKeys, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s

    async def mint(self, user_id: str, job_id: str) -> str:
        """A new token for ``user_id`` to follow ``job_id``."""
        token = PREFIX + secrets.token_urlsafe(32)
        await self.redis.set(self._key(token), f"{user_id}{_SEP}{job_id}", ex=self.ttl_s)
        return token

    async def user_for(self, token: str, job_id: str) -> str | None:
        """The user ``token`` lets follow ``job_id``; None when it is unknown, expired, or
        for another job."""
        if not token.startswith(PREFIX) or len(token) > 100:
            return None
        held = await self.redis.get(self._key(token))
        user, _, job = str(held or "").partition(_SEP)
        return user if user and job == job_id else None

    def _key(self, token: str) -> str:
        return self.keys.stream_token(hashlib.sha256(token.encode()).hexdigest())
