"""API keys: who is calling, and at which tier (which sets their jobs' priority).

A key is shown once, at creation: ``iq_<key_id>_<secret>``. Redis keeps only the SHA-256
of the whole key; a 256-bit random secret needs no slow hash, since nobody can guess it
from its digest. The key id in the clear lets a presented key be looked up in one read
and then compared in constant time.

Redis layout (all under the queue's hash tag, like the engine's keys)::

    <ns>:{<queue>}:apikey:<key_id>         hash: digest, user_id, tier, label, created_at
    <ns>:{<queue>}:apikeys                 set of every key id
    <ns>:{<queue>}:apikeys:user:<user_id>  set of one user's key ids
    <ns>:{<queue>}:whsec:<key_id>          its webhook signing secrets (``webhook_secrets``)
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, Literal, NamedTuple, get_args

import msgspec
from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

from imagequeue_common.contracts import Priority
from imagequeue_common.queue.keys import QueueKeys
from imagequeue_common.webhook_secrets import WebhookSecrets
from imagequeue_common.webhook_signing import new_secret

Tier = Literal["premium", "regular", "bulk"]
TIERS: Final[tuple[Tier, ...]] = get_args(Tier)
TIER_PRIORITY: Final[dict[Tier, Priority]] = {
    "premium": Priority.HIGH,
    "regular": Priority.NORMAL,
    "bulk": Priority.LOW,
}
MAX_LABEL = 200

# \Z, not $: Python's $ also matches before a trailing newline.
_USER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
_KEY_ID = re.compile(r"[0-9a-f]{16}\Z")
# token_urlsafe(32) is 43 characters of the URL-safe base64 alphabet, which includes "_":
# the key id has a fixed length, so the split stays unambiguous.
_PRESENTED = re.compile(r"iq_([0-9a-f]{16})_[A-Za-z0-9_-]{43}\Z")
_FIELDS = ("user_id", "tier", "label", "created_at")


class ApiKey(msgspec.Struct, frozen=True):
    """What a key grants: who the caller is and their tier. Never holds the secret."""

    key_id: str
    user_id: str
    tier: Tier
    label: str
    created_at: datetime

    @property
    def priority(self) -> Priority:
        """The queue priority of this key's jobs."""
        return TIER_PRIORITY[self.tier]


def validate_user_id(user_id: str) -> str:
    """``user_id`` if it is 1-64 of ``A-Z a-z 0-9 _ . : -``, else ``ValueError``."""
    if not _USER_ID.match(user_id):
        raise ValueError(f"invalid user id {user_id!r}: use 1-64 of A-Z a-z 0-9 _ . : -")
    return user_id


def _digest(presented: str) -> str:
    return hashlib.sha256(presented.encode("ascii")).hexdigest()


def _text(value: bytes | str | None) -> str | None:
    # The store works with clients that decode replies and with clients that do not.
    return value.decode() if isinstance(value, bytes) else value


def _load(key_id: str, values: Sequence[bytes | str | None]) -> ApiKey | None:
    """The record from the hash's ``_FIELDS``, or ``None`` if the hash is gone."""
    fields = dict(zip(_FIELDS, map(_text, values), strict=True))
    if fields["user_id"] is None:
        return None
    # convert checks the tier and parses the timestamp: a hand-edited hash fails loudly.
    return msgspec.convert({"key_id": key_id, **fields}, ApiKey)


class NewKey(NamedTuple):
    """A key just made: the two secrets shown this once, and its record."""

    plaintext: str
    record: ApiKey
    webhook_secret: str
    """Signs the webhook deliveries of this key's jobs (``whsec_…``)."""


class ApiKeyStore:
    """API keys of one queue, in Redis."""

    def __init__(self, redis: Redis, queue: str, namespace: str = "iq") -> None:
        self._redis = redis
        self._keys = QueueKeys.for_queue(queue, namespace)
        self._all = self._keys.api_keys
        self.webhook_secrets = WebhookSecrets(redis, queue, namespace)
        """The keys' webhook signing secrets (rotation, and what signs a delivery)."""

    def _key(self, key_id: str) -> str:
        return self._keys.api_key(key_id)

    def _user_index(self, user_id: str) -> str:
        return self._keys.api_keys_of(user_id)

    async def create(self, user_id: str, tier: str, label: str = "") -> tuple[str, ApiKey]:
        """Create a key for ``user_id``; returns ``(plaintext key, its record)``
        (:meth:`create_key` also answers its webhook secret)."""
        made = await self.create_key(user_id, tier, label)
        return made.plaintext, made.record

    async def create_key(self, user_id: str, tier: str, label: str = "") -> NewKey:
        """Create a key for ``user_id`` with its webhook signing secret.

        The plaintext key is returned this once and stored nowhere; the webhook secret is
        kept for signing, and no API shows it again. Raises ``ValueError`` for a malformed
        user id, an unknown tier or an over-long label.
        """
        validate_user_id(user_id)
        if tier not in TIER_PRIORITY:
            raise ValueError(f"unknown tier {tier!r}: use one of {', '.join(TIERS)}")
        if len(label) > MAX_LABEL or not label.isprintable():
            raise ValueError(f"label must be at most {MAX_LABEL} printable characters")
        key_id = secrets.token_hex(8)
        plaintext = f"iq_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id, user_id, tier, label, datetime.now(UTC))
        fields: dict[FieldT, EncodableT] = {
            "digest": _digest(plaintext),
            "user_id": user_id,
            "tier": tier,
            "label": label,
            "created_at": record.created_at.isoformat(),
        }
        webhook_secret = new_secret()
        # One transaction: a key is never in an index without its hash, nor the reverse,
        # nor without its webhook secret.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(key_id), mapping=fields)
            pipe.hset(self._keys.webhook_secret(key_id), "current", webhook_secret)
            pipe.sadd(self._all, key_id)
            pipe.sadd(self._user_index(user_id), key_id)
            await pipe.execute()
        return NewKey(plaintext, record, webhook_secret)

    async def authenticate(self, presented: str) -> ApiKey | None:
        """The key's record if ``presented`` is a live key, else ``None`` (one Redis read).

        A string that is not shaped like a key is refused without asking Redis.
        """
        match = _PRESENTED.match(presented)
        if match is None:
            return None
        key_id = match.group(1)
        values = await self._redis.hmget(self._key(key_id), ["digest", *_FIELDS])
        stored = _text(values[0])
        if stored is None or not hmac.compare_digest(stored, _digest(presented)):
            return None
        return _load(key_id, values[1:])

    async def revoke(self, key_id: str) -> bool:
        """Delete key ``key_id`` at once; ``False`` if there was no such key."""
        if not _KEY_ID.match(key_id):
            return False
        user_id = _text(await self._redis.hget(self._key(key_id), "user_id"))
        if user_id is None:
            return False
        # A key's user never changes, so reading it first cannot race; the transaction keeps
        # the hash and both indexes consistent. DEL's count tells a concurrent revoke apart.
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(key_id))
            pipe.delete(self._keys.webhook_secret(key_id))
            pipe.srem(self._all, key_id)
            pipe.srem(self._user_index(user_id), key_id)
            deleted, _, _, _ = await pipe.execute()
        return bool(deleted)

    async def list_keys(self, user_id: str | None = None) -> list[ApiKey]:
        """Every key (or one user's), oldest first; secrets are never part of a record."""
        index = self._all if user_id is None else self._user_index(validate_user_id(user_id))
        key_ids = [str(_text(k)) for k in await self._redis.smembers(index)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key_id in key_ids:
                pipe.hmget(self._key(key_id), list(_FIELDS))
            rows = await pipe.execute()
        # A key revoked between the two reads has no hash any more: it is left out.
        loaded = (_load(key_id, row) for key_id, row in zip(key_ids, rows, strict=True))
        return sorted((k for k in loaded if k is not None), key=lambda k: (k.created_at, k.key_id))
