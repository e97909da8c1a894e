"""``Idempotency-Key`` on POSTs: one key, one body, one piece of work, one answer.

The first request with a key holds it while it works, then stores its answer; a retry with
the same key and body gets that answer back, never a second job; a request with the same
key and another body is refused (the API answers 422). A request that finds the key still
held waits for the holder's answer. A holder that dies loses the key after ``lock_s``
and the next request takes it over. Keys are per user. Layout::

    <ns>:{<queue>}:idem:<user_id>:<sha256 of the key>   hash: fp, owner | answer

The key itself is hashed in the Redis key name: it may be 255 characters of anything
printable, and it is the client's secret-ish handle, so it is never logged either.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets

import msgspec
from redis.asyncio import Redis

from imagequeue_api.apikeys import validate_user_id
from imagequeue_api.scripts import register
from imagequeue_common.errors import ImageQueueError
from imagequeue_common.queue.keys import QueueKeys

log = logging.getLogger("imagequeue.api.idempotency")

# Printable ASCII, space included (RFC 9110 field values may hold it inside).
_KEY = re.compile(r"[\x20-\x7e]{1,255}\Z")
_FIRST_POLL_S = 0.01
_EXPIRY_MARGIN_S = 0.05
_MAX_POLL_S = 0.1
_MAX_HELD = 1024


class Proceed(msgspec.Struct, frozen=True):
    """The caller holds the key now: do the work, then ``complete`` or ``abandon``."""


class Replay(msgspec.Struct, frozen=True):
    """The work was done before: answer with this response again."""

    status: int
    body: bytes
    content_type: str


class Mismatch(msgspec.Struct, frozen=True):
    """The key was used with another request body: refuse (422)."""


Begin = Proceed | Replay | Mismatch


class IdempotencyBusyError(ImageQueueError):
    """Another request still held the key after waiting ``waited_s``: answer 409."""

    def __init__(self, waited_s: float) -> None:
        super().__init__(f"another request with this Idempotency-Key ran over {waited_s:g} s")
        self.waited_s = waited_s


class _Answer(msgspec.Struct, frozen=True, array_like=True):
    # msgspec writes bytes as base64, so any body survives a client that decodes replies.
    status: int
    content_type: str
    body: bytes


def validate_key(key: str) -> str:
    """``key`` if it is 1-255 printable ASCII characters, else ``ValueError``."""
    if not _KEY.match(key):
        raise ValueError("Idempotency-Key must be 1-255 printable ASCII characters")
    return key


class IdempotencyStore:
    """Idempotency keys of one queue, in Redis.

    Tokens of the keys this instance holds are kept in memory, so ``complete`` and
    ``abandon`` must be called on the instance whose ``begin`` answered ``Proceed``
    (one per API process).
    """

    def __init__(
        self,
        redis: Redis,
        queue: str,
        namespace: str = "iq",
        ttl_s: float = 86400,
        lock_s: float = 30,
    ) -> None:
        if ttl_s <= 0 or lock_s <= 0:
            raise ValueError("ttl_s and lock_s must be > 0")
        self._prefix = QueueKeys.for_queue(queue, namespace).idempotency
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._lock_s = lock_s
        self._lock_ms = max(1, round(lock_s * 1000))
        self._begin = register(redis, "idem_begin")
        self._finish = register(redis, "idem_finish")
        self._held: dict[str, tuple[str, float]] = {}
        """Record key -> (our token, loop time when our lock expires)."""

    def _record(self, user_id: str, key: str) -> str:
        digest = hashlib.sha256(validate_key(key).encode("ascii")).hexdigest()
        return f"{self._prefix}{validate_user_id(user_id)}:{digest}"

    async def begin(self, user_id: str, key: str, body: bytes) -> Begin:
        """Claim ``key`` for this request of ``user_id`` with raw body ``body``.

        Returns :class:`Proceed`, :class:`Replay` or :class:`Mismatch`. While another
        request holds the key, polls (10 ms growing to 100 ms) for up to ``lock_s``; if it
        is held still, raises :class:`IdempotencyBusyError`. ``ValueError`` for a bad key.
        """
        record = self._record(user_id, key)
        fingerprint = hashlib.sha256(body).hexdigest()
        token = secrets.token_hex(16)
        loop = asyncio.get_running_loop()
        # A holder that died began before us, so its lock is gone by lock_s from now; the
        # margin keeps our last look from landing in the same millisecond as the expiry
        # (Redis expires by its own ms clock): seen as a rare IdempotencyBusyError.
        deadline = loop.time() + self._lock_s + _EXPIRY_MARGIN_S
        delay = _FIRST_POLL_S
        while True:
            reply = await self._begin(keys=[record], args=[fingerprint, token, self._lock_ms])
            # Clients that do not decode replies give bytes; msgspec decodes either.
            kind = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
            if kind == "proceed":
                self._hold(record, token, loop.time() + self._lock_s)
                return Proceed()
            if kind == "replay":
                answer = msgspec.json.decode(reply[1], type=_Answer)
                return Replay(answer.status, answer.body, answer.content_type)
            if kind == "mismatch":
                return Mismatch()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise IdempotencyBusyError(self._lock_s)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, _MAX_POLL_S)

    async def complete(
        self, user_id: str, key: str, status: int, body: bytes, content_type: str
    ) -> bool:
        """Store the answer to the held ``key`` for ``ttl_s``; waiting requests replay it.

        ``False`` if this instance did not hold the key (any more): then nothing is stored.
        """
        answer = msgspec.json.encode(_Answer(status, content_type, body)).decode()
        return await self._end(self._record(user_id, key), answer, user_id)

    async def abandon(self, user_id: str, key: str) -> bool:
        """The work failed: release ``key`` so that a retry (or a waiter) may proceed."""
        return await self._end(self._record(user_id, key), "", user_id)

    async def _end(self, record: str, answer: str, user_id: str) -> bool:
        held = self._held.get(record)
        if held is None:
            return False
        applied = await self._finish(keys=[record], args=[held[0], answer, self._ttl_ms])
        # Forgotten only once Redis answered: after a failed complete, abandon can still run.
        self._held.pop(record, None)
        if not applied:
            # Our lock expired and another request took the key over: the work may have
            # been done twice, and its answer wins. Worth knowing: lock_s is too short.
            log.warning("idempotency lock of user %s expired before its work ended", user_id)
        return bool(applied)

    def _hold(self, record: str, token: str, expires: float) -> None:
        if len(self._held) >= _MAX_HELD:
            # Entries outlive their use only when both complete and abandon failed (Redis
            # down); their locks have expired in Redis anyway.
            now = asyncio.get_running_loop().time()
            for stale in [r for r, (_, e) in self._held.items() if e < now]:
                del self._held[stale]
        self._held[record] = (token, expires)
