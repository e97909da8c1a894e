"""The worker's loop-lag sampler: what it adds to each upstream permit's window."""

from __future__ import annotations

import asyncio
import time

import pytest

from imagequeue_worker.looplag import LoopLag
from tests.support.procs import wait_until


async def test_a_blocked_loop_shows_as_lag_and_is_forgotten_after_keep_s() -> None:
    lag = LoopLag(interval_s=0.01, keep_s=0.3)
    assert lag.recent_max_ms == 0  # nothing sampled yet
    lag.start()
    try:
        await asyncio.sleep(0.05)
        time.sleep(0.12)  # noqa: ASYNC251 - the point: the loop cannot run for 120 ms

        async def lag_at_least(ms: int) -> bool:
            return lag.recent_max_ms >= ms

        async def lag_below(ms: int) -> bool:
            return lag.recent_max_ms < ms

        await wait_until(lambda: lag_at_least(100), 2, "the blocked loop to show")
        assert lag.recent_max_ms < 1000
        # Sampling on, the block falls out of the kept window: what is left is the loop's
        # everyday lateness, a few ms at most.
        await wait_until(lambda: lag_below(50), 3, "the block to be forgotten")
    finally:
        await lag.stop()
    await lag.stop()  # twice is fine


def test_settings_of_the_sampler_are_checked() -> None:
    with pytest.raises(ValueError, match="interval_s > 0"):
        LoopLag(interval_s=0)
    with pytest.raises(ValueError, match="keep_s >= interval_s"):
        LoopLag(interval_s=1, keep_s=0.5)
