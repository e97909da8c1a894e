"""Webhook signatures per the Standard Webhooks specification (standardwebhooks.com).

A delivery carries three headers: ``webhook-id`` (the same on every retry of one delivery,
so a receiver can drop duplicates), ``webhook-timestamp`` (Unix seconds of this attempt)
and ``webhook-signature``: ``v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``, one
per secret, separated by spaces — during a rotation both the old and the new secret sign,
and a receiver holding either accepts. A secret is ``whsec_`` + the base64 of 32 random
bytes; the HMAC key is those bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"  # noqa: S105 - the spec's prefix, not a secret
SECRET_BYTES = 32
TOLERANCE_S = 5 * 60
"""How far a timestamp may be from the receiver's clock (the spec's suggestion)."""
_MSG_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def new_secret() -> str:
    """A fresh signing secret, ``whsec_<base64 of 32 random bytes>``."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of ``secret``; ``ValueError`` naming what is wrong with it."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError("a webhook secret holds 24 to 64 bytes")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "<msg_id>.<timestamp>.<body>">``."""
    if not _MSG_ID.fullmatch(msg_id):
        raise ValueError("a webhook id is 1-64 letters, digits, '_' or '-'")
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    signing_secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three headers of one attempt, signed with every secret given (newest first)."""
    if not signing_secrets:
        raise ValueError("a delivery needs at least one signing secret")
    signatures = " ".join(signature(s, msg_id, timestamp, body) for s in signing_secrets)
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signatures}  # fmt: skip


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, now: float,
    tolerance_s: int = TOLERANCE_S,
) -> bool:  # fmt: skip
    """Whether ``headers`` sign ``body`` with ``secret`` at a timestamp within
    ``tolerance_s`` of ``now`` (what a receiver checks; header names in lower case)."""
    try:
        msg_id, stamp = headers["webhook-id"], int(headers["webhook-timestamp"])
        expected = signature(secret, msg_id, stamp, body)
    except (KeyError, ValueError):
        return False
    if abs(now - stamp) > tolerance_s:
        return False
    offered = headers.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, s) for s in offered)
