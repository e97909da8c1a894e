"""Each API key's webhook signing secret, with rotation.

A secret signs every delivery for its key's jobs (``webhook_signing``), so it is kept in
Redis as it is — an HMAC needs the secret itself, unlike the API key, of which only a
digest is kept. The API shows it once, when it is made (with the key, or by a rotation);
nothing reads it back out but the deliveries.

A rotation makes a new current secret and keeps the old one for a grace period, in which
deliveries carry both signatures, so a receiver can switch secrets without losing one.

Redis layout, beside the key's own hash (``QueueKeys.webhook_secret``)::

    <ns>:{<queue>}:whsec:<key_id>   hash: current, previous, previous_until (Unix s)
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from imagequeue_common.queue.keys import QueueKeys
from imagequeue_common.webhook_signing import new_secret

MAX_GRACE_S = 30 * 86400
"""The longest a rotated-out secret may go on signing: 30 days."""


_ROTATE = """
local old = redis.call('HGET', KEYS[1], 'current')
if not old then
  return 0
end
redis.call('HSET', KEYS[1], 'current', ARGV[1], 'previous', old, 'previous_until', ARGV[2])
return 1
"""


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class WebhookSecrets:
    """The webhook secrets of one queue's API keys."""

    def __init__(self, redis: Redis, queue: str, namespace: str = "iq") -> None:
        self._redis = redis
        self._keys = QueueKeys.for_queue(queue, namespace)
        self._rotate = redis.register_script(_ROTATE)

    async def create(self, key_id: str, secret: str | None = None) -> str:
        """A new current secret for ``key_id`` at once (``secret``, else a random one), no
        grace for the one before (for a new key; ``ApiKeyStore`` makes it in the key's own
        transaction; ``just up`` installs the development key's kept one)."""
        secret = secret or new_secret()
        await self._redis.hset(self._keys.webhook_secret(key_id), "current", secret)
        return secret

    async def rotate(self, key_id: str, grace_s: int, now: float | None = None) -> str:
        """A new current secret for ``key_id``; the old one signs too for ``grace_s``
        seconds (0 to 30 days). ``KeyError`` when the key has no secret."""
        if not 0 <= grace_s <= MAX_GRACE_S:
            raise ValueError(f"the grace period is 0 to {MAX_GRACE_S} seconds")
        now = time.time() if now is None else now
        secret = new_secret()
        # One script: two rotations at once must not both keep the same old secret.
        key = self._keys.webhook_secret(key_id)
        if not await self._rotate(keys=[key], args=[secret, int(now + grace_s)]):
            raise KeyError(key_id)
        return secret

    async def signing(self, key_id: str, now: float | None = None) -> list[str]:
        """The secrets that sign a delivery for ``key_id`` now, newest first (none when
        the key has no secret: it was revoked)."""
        now = time.time() if now is None else now
        current, previous, until = map(
            _text,
            await self._redis.hmget(
                self._keys.webhook_secret(key_id), ["current", "previous", "previous_until"]
            ),
        )
        if current is None:
            return []
        if previous and until is not None and now < int(until):
            return [current, previous]
        return [current]

    async def delete(self, key_id: str) -> None:
        """Forget ``key_id``'s secrets (its key is revoked)."""
        await self._redis.delete(self._keys.webhook_secret(key_id))
