"""Broker factories for the engine benchmark: ours and stock taskiq-redis, same no-op task."""

from __future__ import annotations

import os

from taskiq_redis import RedisStreamBroker

from imagequeue_common.contracts import NOOP_TASK
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_worker.app import create_broker

STOCK_QUEUE = "bench-stock"


def engine_broker() -> EngineBroker:
    """Our broker exactly as ``imagequeue-worker run`` builds it (``imagequeue.noop`` included)."""
    return create_broker()


def stock_broker() -> RedisStreamBroker:
    """Stock taskiq-redis ``RedisStreamBroker`` with its defaults and the same no-op task."""
    broker = RedisStreamBroker(os.environ["REDIS_URL"], queue_name=STOCK_QUEUE)

    @broker.task(task_name=NOOP_TASK)
    async def noop() -> None:
        return None

    return broker
