"""Redis outages as one line when they begin and one when they end, per loop, not per try.

A loop that talks to Redis (the claim loop, the heartbeat, the finisher; the API's error
handler) owns one :class:`RedisOutage` and runs each round's Redis work inside it::

    with self._outage:
        await self._beat()
    if self._outage.down:
        ...  # wait before the next try

A round that cannot reach Redis is swallowed; the first one logs
``<loop>: Redis unreachable (ConnectionError: ...); retrying every 1.0 s`` without a
traceback (the traceback of a refused TCP connection says nothing the line does not), the
first round that gets through logs ``<loop>: Redis reachable again after 10.2 s``. Both are
WARNINGs, so a log kept at ``LOG_LEVEL=warning`` shows the outage's end too. A Redis that
answers with an error is no outage: that is logged every time. Other errors pass through.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

UNREACHABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, OSError, ReadOnlyError,
)  # fmt: skip
"""Errors that mean "no primary answered" (refused, reset, timed out, still loading its
data after a restart: ``BusyLoadingError`` is a ``ConnectionError``; ``READONLY``: the
server is a replica now, after a failover), not "Redis said no"."""


def unreachable(exc: BaseException) -> BaseException | None:
    """The error in ``exc``'s cause chain that says Redis did not answer, if any (our
    ``QueueUnavailableError`` wraps the client's ``ConnectionError``)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, UNREACHABLE):
            return seen
        seen = seen.__cause__
    return None


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line."""
    return f"{type(exc).__name__}: {exc}"


class RedisOutage:
    """One loop's view of Redis: answering, or down since when (see the module docstring)."""

    def __init__(
        self,
        loop: str,
        logger: logging.Logger,
        *,
        retry_s: float,
        retrying: str = "",
        ping: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """``ping``: for a caller with no loop of its own (the API's error handler): while
        down, a task pings Redis every ``retry_s`` so the outage's end is logged when it
        happens, not whenever the next request comes."""
        self.loop = loop
        self.retry_s = retry_s
        self.retrying = retrying or f"retrying every {retry_s:.1f} s"
        """What the loop does meanwhile, for the outage's first line."""
        self.failed_last = False
        """The last round under ``with`` failed (unreachable or refused): wait, then retry."""
        self._log = logger
        self._since: float | None = None
        self.back_at: float | None = None
        """``time.monotonic()`` when the last outage ended (None: none yet)."""
        self._failures = 0
        self._ping = ping
        self._probe: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        """True from the first round that could not reach Redis to the first that did."""
        return self._since is not None

    def __enter__(self) -> RedisOutage:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self.failed_last = exc is not None
        if exc is None:
            self.answered()
            return False
        if self.noted(exc):
            return True
        if isinstance(exc, RedisError):
            # Redis answered, with an error (a script fault, OOM): no outage, and worth a
            # line every time it happens.
            self.answered()
            self._log.warning("%s: Redis refused the command (%s); retrying in %.1f s",
                              self.loop, describe(exc), self.retry_s)  # fmt: skip
            return True
        return False

    def noted(self, exc: BaseException) -> bool:
        """Note ``exc`` when it says Redis did not answer (logging only the outage's first);
        False for any other error."""
        cause = unreachable(exc)
        if cause is None:
            return False
        self._failures += 1
        if self._since is None:
            self._since = time.monotonic()
            self._log.warning("%s: Redis unreachable (%s); %s",
                              self.loop, describe(cause), self.retrying)  # fmt: skip
            if self._ping is not None and self._probe is None:
                self._probe = asyncio.create_task(self._ping_until_back(self._ping),
                                                  name=f"redis-probe-{self.loop}")  # fmt: skip
        return True

    def answered(self) -> None:
        """Note a round that reached Redis; logs the end of an outage."""
        if self._since is None:
            return
        self.back_at = time.monotonic()
        lasted, tries = self.back_at - self._since, self._failures
        self._since, self._failures = None, 0
        self._log.warning("%s: Redis reachable again after %.1f s (%d failed tries)",
                          self.loop, lasted, tries)  # fmt: skip

    async def _ping_until_back(self, ping: Callable[[], Awaitable[object]]) -> None:
        try:
            while self.down:
                await asyncio.sleep(self.retry_s)
                with self:
                    await ping()
        finally:
            self._probe = None

    async def close(self) -> None:
        """Stop the probe, if one runs (idempotent)."""
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
