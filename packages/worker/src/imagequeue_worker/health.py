"""``imagequeue-worker health``: is a worker of this host alive? For container healthchecks.

A worker process records itself in Redis at every heartbeat (a third of ``LEASE_MS``) with
its host name; the check asks Redis for the live workers (beat within one lease) and looks
for one on this host. So "healthy" means what the rest of the system sees: this worker
holds its leases and counts towards capacity and ETAs. A worker whose event loop is stuck,
or that cannot reach Redis, stops beating and turns unhealthy within a lease.
"""

from __future__ import annotations

import socket

import msgspec
from redis.exceptions import RedisError

from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings
from imagequeue_common.webhook_ledger import delivery_settings


async def live_workers_json(settings: Settings, *, webhooks: bool = False) -> list[str]:
    """The live workers (webhook workers with ``webhooks``), one JSON object each."""
    queue_settings = delivery_settings(settings) if webhooks else settings
    client = command_client(settings.redis_url_or_default)
    try:
        workers = await JobLedger(client, queue_settings).live_workers()
    finally:
        await client.aclose()
    return [msgspec.json.encode(worker).decode() for worker in workers]


async def health_problem(settings: Settings, *, webhooks: bool = False) -> str | None:
    """None when a worker of this host (a webhook worker with ``webhooks``) beat within the
    last lease; otherwise what is wrong, in one line."""
    queue_settings = delivery_settings(settings) if webhooks else settings
    host = socket.gethostname()
    client = command_client(settings.redis_url_or_default)
    try:
        workers = await JobLedger(client, queue_settings).live_workers()
    except (RedisError, OSError) as exc:
        return f"Redis did not answer: {exc}"
    finally:
        await client.aclose()
    mine = [worker for worker in workers if worker.host == host]
    if not mine:
        return (f"no worker on {host} beat within {settings.lease_ms} ms "
                f"(queue {queue_settings.queue_name})")  # fmt: skip
    return None
