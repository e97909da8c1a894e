"""Dashboard sessions kept in Redis, so that logging out (or a password change) ends them.

The browser holds only a random 256-bit token (``secrets.token_urlsafe(32)``); Redis holds
the session under the token's SHA-256, so its contents (a dump, a ``MONITOR``) give no
cookie that works. A session ends when it is not used for ``idle_s``, ``max_s`` after its
login however much it is used, when it is ended (logout, "log out everywhere"), or — checked
by the caller against :class:`~imagequeue_api.dashboard.logins.Logins` — when the password
it was opened with is no longer the login's. Redis layout (under the queue's hash tag)::

    <ns>:{<queue>}:dash:session:<sha256 of token>   hash: user, role, csrf, fingerprint,
                                                     created_ms, ends_ms (expires when idle)
    <ns>:{<queue>}:dash:sessions                    zset: digest -> ends_ms (every session)
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence

import msgspec
from redis.asyncio import Redis

from imagequeue_api.dashboard.logins import Role
from imagequeue_api.scripts import register
from imagequeue_common.queue.keys import QueueKeys

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}\Z")  # token_urlsafe(32); \Z: no trailing newline
_FIELDS = ("user", "role", "csrf", "fingerprint", "created_ms", "ends_ms")


class Session(msgspec.Struct, frozen=True):
    """One logged-in browser: who, with which role, its CSRF token and when it ends."""

    digest: str
    """SHA-256 of the session's token: names the session without being a credential."""
    user: str
    role: Role
    csrf: str
    fingerprint: str
    """Of the password the session was opened with (see ``Logins.fingerprint``)."""
    created_ms: int
    ends_ms: int
    """The end of its lifetime (Redis clock); it ends sooner when idle."""


def is_token(text: str) -> bool:
    """Whether ``text`` is shaped like a session token (anything else is never looked up)."""
    return bool(_TOKEN.match(text))


def digest_of(token: str) -> str:
    """The name a session is stored under."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _session(digest: str, flat: Sequence[bytes | str]) -> Session | None:
    """The session from HGETALL's flat list; ``None`` for an empty or malformed record."""
    values = [_text(v) for v in flat]
    fields = dict(zip(values[::2], values[1::2], strict=True))
    try:
        return msgspec.convert({"digest": digest, **fields}, Session, strict=False)
    except msgspec.ValidationError:
        return None  # a hand-edited hash is no session, not a 500


class SessionStore:
    """The dashboard sessions of one queue's deployment, in Redis."""

    def __init__(self, redis: Redis, queue: str, namespace: str = "iq", *, idle_s: float,
                 max_s: float) -> None:  # fmt: skip
        if idle_s <= 0 or max_s <= 0:
            raise ValueError("idle_s and max_s must be above 0")
        prefix = QueueKeys.for_queue(queue, namespace).dashboard
        self._redis = redis
        self._session_prefix = prefix + "session:"
        self._index = prefix + "sessions"
        self._idle_ms = max(1, round(idle_s * 1000))
        self._max_ms = max(1, round(max_s * 1000))
        self._open = register(redis, "session_open")
        self._touch = register(redis, "session_touch")
        self._end_many = register(redis, "session_end_many")

    @property
    def max_s(self) -> float:
        """A session's lifetime, for the cookie's ``Max-Age``."""
        return self._max_ms / 1000

    async def open(self, user: str, role: Role, fingerprint: str) -> tuple[str, Session]:
        """A new session: ``(token for the cookie, the session)``; the token is stored nowhere."""
        token = secrets.token_urlsafe(32)
        digest = digest_of(token)
        csrf = secrets.token_urlsafe(24)
        created, ends = await self._open(
            keys=[self._session_prefix + digest, self._index],
            args=[digest, user, role, csrf, fingerprint, self._idle_ms, self._max_ms,
                  self._session_prefix],
        )  # fmt: skip
        return token, Session(digest, user, role, csrf, fingerprint, int(created), int(ends))

    async def load(self, token: str) -> Session | None:
        """The live session of ``token``, its idle time reset; ``None`` otherwise.

        A string not shaped like a token is refused without asking Redis.
        """
        if not is_token(token):
            return None
        digest = digest_of(token)
        flat = await self._touch(keys=[self._session_prefix + digest], args=[self._idle_ms])
        return _session(digest, flat) if flat else None

    async def end(self, digest: str) -> bool:
        """End one session (by :attr:`Session.digest`); ``False`` if it had ended already."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._session_prefix + digest)
            pipe.zrem(self._index, digest)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    async def end_user(self, user: str) -> int:
        """End every session of ``user``; how many there were."""
        if not user:
            raise ValueError("end_user needs a user; end_all ends everyone's sessions")
        return int(await self._end_many(keys=[self._index], args=[self._session_prefix, user]))

    async def end_all(self) -> int:
        """End every session; how many there were."""
        return int(await self._end_many(keys=[self._index], args=[self._session_prefix, ""]))

    async def list_sessions(self) -> list[Session]:
        """Every live session, oldest login first (idle expiry not renewed)."""
        members = await self._redis.zrange(self._index, 0, -1)
        digests = [_text(d) for d in members if isinstance(d, bytes | str)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.hmget(self._session_prefix + digest, list(_FIELDS))
            rows = await pipe.execute()
        found = []
        for digest, row in zip(digests, rows, strict=True):
            if any(value is None for value in row):
                continue  # ended between the two reads, or expired and not swept yet
            flat = [v for pair in zip(_FIELDS, row, strict=True) for v in pair]
            if (session := _session(digest, flat)) is not None:
                found.append(session)
        return sorted(found, key=lambda s: (s.created_ms, s.digest))
