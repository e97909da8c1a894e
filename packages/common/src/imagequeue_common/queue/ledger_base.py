"""What every part of the job ledger works on: one queue's keys, scripts and client."""

from __future__ import annotations

from redis.asyncio import Redis

from imagequeue_common.queue.keys import QueueKeys
from imagequeue_common.queue.scripts import Scripts
from imagequeue_common.settings import Settings


class LedgerBase:
    """One queue in Redis: its client, settings, key names and registered scripts."""

    def __init__(self, client: Redis, settings: Settings, *, namespace: str = "iq") -> None:
        self.client = client
        self.settings = settings
        self.keys = QueueKeys.for_queue(settings.queue_name, namespace)
        self._scripts = Scripts(client, settings.replicas_ack, settings.redis_replica_ack_ms)
        self._maxlen = settings.events_maxlen

    @property
    def scripts(self) -> Scripts:
        """The engine's scripts on this ledger's client (for :class:`QueueAdmin`)."""
        return self._scripts
