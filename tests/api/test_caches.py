"""The API's per-process caches on real components: poses from SQLite, queue rates from Redis."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from redis.asyncio import Redis

from imagequeue_api.eta import RatesCache
from imagequeue_api.poses import PoseCache
from imagequeue_common.errors import PoseNotFoundError
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings
from imagequeue_common.store import open_store


async def test_a_pose_is_read_again_only_when_older_than_its_age(tmp_path: Path) -> None:
    path = tmp_path / "poses.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        cache, fresh = PoseCache(store, max_age_s=3600), PoseCache(store, max_age_s=0)
        assert (await cache.get("pose-standing")).name == "Standing portrait"
        with sqlite3.connect(path) as db:  # an operator renames the pose in the database
            db.execute("UPDATE poses SET name = 'Upright' WHERE id = 'pose-standing'")
        assert (await cache.get("pose-standing")).name == "Standing portrait"  # cached
        assert (await fresh.get("pose-standing")).name == "Upright"  # past its age: re-read
        with pytest.raises(PoseNotFoundError):
            await cache.get("pose-nonexistent")
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO poses (id, name, prompt) VALUES ('pose-new', 'New', 'p')")
        assert (await cache.get("pose-new")).name == "New"  # a miss is never remembered
    finally:
        await store.close()


async def commands(redis: Redis) -> int:
    return int((await redis.info("stats"))["total_commands_processed"])


async def test_concurrent_requests_share_one_measurement_of_the_rates(
    redis: Redis, settings: Settings
) -> None:
    ledger = JobLedger(redis, settings)
    await RatesCache(ledger).get()  # loads the scripts
    before = await commands(redis)
    await RatesCache(ledger).get()
    one = await commands(redis) - before - 1  # what one measurement costs (less this INFO)
    cache = RatesCache(ledger, max_age_s=3600)
    before = await commands(redis)
    rates = await asyncio.gather(*(cache.get() for _ in range(50)))
    assert await commands(redis) - before - 1 == one  # fifty callers, one measurement
    assert all(r is rates[0] for r in rates)
    before = await commands(redis)
    await cache.get()  # fresh enough: no Redis at all
    assert await commands(redis) - before == 1  # only this INFO
