"""Login throttling: a few wrong passwords per username and per client address, then a lock.

Every try is counted in Redis *before* its password is checked (``login_attempt.lua``), so
all API processes share the counts and no burst of concurrent tries gets more than the
limit checked. While a username or an address is locked, its tries are refused without a
look at the password: the answer is the same whether the password is right or not, so a
lock is no oracle. A lock on one username leaves the other usernames alone; a lock on an
address refuses every username from it. A correct password clears the username's count.
Layout (counters expire by themselves: the window, or the lockout once at the limit)::

    <ns>:{<queue>}:dash:fail:user:<sha256 of username>    tries counted (string)
    <ns>:{<queue>}:dash:fail:addr:<sha256 of address>
"""

from __future__ import annotations

import hashlib

import msgspec
from redis.asyncio import Redis

from imagequeue_api.scripts import register
from imagequeue_common.queue.keys import QueueKeys


class Attempt(msgspec.Struct, frozen=True):
    """The throttle's answer to one login try."""

    refused_s: float = 0.0
    """Above 0: refused unchecked; the username or address is locked this much longer."""
    locks_s: float = 0.0
    """Above 0: this was the last try allowed; a wrong password locks for this long."""


def _hashed(text: str) -> str:
    # Usernames and forwarded addresses are anyone's input: fixed-length key names.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


class LoginThrottle:
    """Per-username and per-address limits on dashboard login tries (see the module doc)."""

    def __init__(self, redis: Redis, queue: str, namespace: str = "iq", *, per_user: int,
                 per_address: int, window_s: float, lockout_s: float) -> None:  # fmt: skip
        if per_user < 1 or per_address < 1 or window_s <= 0 or lockout_s <= 0:
            raise ValueError("login limits must be at least 1, durations above 0")
        self._prefix = QueueKeys.for_queue(queue, namespace).dashboard + "fail:"
        self._limits = (per_user, per_address)
        self._window_ms = max(1, round(window_s * 1000))
        self._lockout_ms = max(1, round(lockout_s * 1000))
        self._attempt = register(redis, "login_attempt")
        self._succeeded = register(redis, "login_succeeded")

    def _keys(self, username: str, address: str) -> list[str]:
        return [f"{self._prefix}user:{_hashed(username)}", f"{self._prefix}addr:{_hashed(address)}"]

    async def attempt(self, username: str, address: str) -> Attempt:
        """Count a try of ``username`` from ``address``, or refuse it while either is locked."""
        refused_ms, locks_ms = await self._attempt(
            keys=self._keys(username, address),
            args=[*self._limits, self._window_ms, self._lockout_ms],
        )
        return Attempt(int(refused_ms) / 1000, int(locks_ms) / 1000)

    async def succeeded(self, username: str, address: str) -> None:
        """The try's password was right: clear the username's count, give the address its try
        back."""
        await self._succeeded(keys=self._keys(username, address))
