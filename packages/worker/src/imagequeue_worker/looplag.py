"""How late this worker's event loop runs what is due: the local share of the delay between
an upstream permit and the request's arrival at the GPU side.

``permit.lua`` counts a request when the permit is granted; the GPU side counts it when it
arrives. Anything in between shifts requests against each other, and two shifted ones can
put ``max + 1`` into one of the GPU side's windows. The network's share is a constant,
``RATE_LIMIT_GUARD_MS``; this process's share is not: on a loaded machine the worker is not
scheduled for tens of milliseconds (measured on 2 cores under four CPU hogs: permit to
arrival 22 ms at most against 3 ms at the median). So each permit's slack is widened by
the longest loop delay seen lately, and the permits after it wait for it: free when the
machine is idle, safe when it is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque


class LoopLag:
    """Samples the loop's lateness every ``interval_s``; remembers the last ``keep_s``."""

    def __init__(self, interval_s: float = 0.05, keep_s: float = 10.0) -> None:
        if interval_s <= 0 or keep_s < interval_s:
            raise ValueError("LoopLag needs interval_s > 0 and keep_s >= interval_s")
        self._interval_s = interval_s
        self._samples: deque[float] = deque(maxlen=max(1, round(keep_s / interval_s)))
        self._task: asyncio.Task[None] | None = None

    @property
    def recent_max_ms(self) -> int:
        """The longest lateness (ms, rounded up) among the samples kept; 0 before any."""
        return math.ceil(max(self._samples, default=0.0) * 1000)

    def start(self) -> None:
        """Begin sampling in the running loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="loop-lag")

    async def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._interval_s
            await asyncio.sleep(self._interval_s)
            self._samples.append(max(0.0, loop.time() - due))
