"""What an API process opens at start and closes at the end, built once in the lifespan.

Handlers get it through the ``resources`` dependency (``Provide`` in ``create_app``); nothing
connects at import time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from litestar import Litestar
from litestar.di import NamedDependency
from redis.asyncio import Redis

from imagequeue_api.apikeys import ApiKeyStore
from imagequeue_api.dashboard.logins import Logins
from imagequeue_api.dashboard.sessions import SessionStore
from imagequeue_api.dashboard.throttle import LoginThrottle
from imagequeue_api.eta import RatesCache
from imagequeue_api.events import EventHub
from imagequeue_api.idempotency import IdempotencyStore
from imagequeue_api.poses import PoseCache
from imagequeue_api.ratelimit import RequestLimiter
from imagequeue_api.streamtokens import StreamTokens
from imagequeue_common.outage import RedisOutage
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.redis_conn import blocking_client
from imagequeue_common.runtime import freeze_startup_heap
from imagequeue_common.settings import Settings
from imagequeue_common.store import CharacterStore, open_store
from imagequeue_common.webhook_ledger import WebhookLedger, delivery_settings


@dataclass(slots=True)
class Resources:
    """The API process's clients: queue, store, keys, idempotency, limits, live events, the
    caches of queue rates and poses, the process's view of Redis outages, and the
    dashboard's logins, sessions and login throttle."""

    settings: Settings
    broker: EngineBroker
    store: CharacterStore
    keys: ApiKeyStore
    idempotency: IdempotencyStore
    limiter: RequestLimiter
    events: EventHub
    stream_tokens: StreamTokens
    rates: RatesCache
    poses: PoseCache
    outage: RedisOutage
    logins: Logins
    sessions: SessionStore
    login_throttle: LoginThrottle
    webhooks: WebhookLedger
    deliveries: JobLedger
    """The queue of webhook deliveries (``Settings.webhook_queue``), read for their owners."""


Res = NamedDependency[Resources]
"""A handler parameter ``resources: Res`` receives the process's :class:`Resources`."""


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    """Connect everything; close it all in reverse order on the way out."""
    broker = EngineBroker(settings, settings.redis_url_or_default)
    await broker.startup()
    try:
        redis, queue = broker.ledger.client, settings.queue_name
        retry_s = settings.redis_retry_ms / 1000
        outage = RedisOutage("api", logging.getLogger("imagequeue.api"), retry_s=retry_s,
                             ping=redis.ping)  # fmt: skip
        store = await open_store(settings.database_url)
        # The event hub blocks in XREAD: a connection of its own, without a read timeout.
        stream_client = blocking_client(settings.redis_url_or_default)
        try:
            events = EventHub(stream_client, broker.ledger.keys.events, retry_s=retry_s,
                              replay_max=settings.events_maxlen)  # fmt: skip
            events.start()
            try:
                yield Resources(
                    settings=settings,
                    broker=broker,
                    store=store,
                    keys=ApiKeyStore(redis, queue),
                    idempotency=IdempotencyStore(redis, queue),
                    limiter=RequestLimiter(redis, queue, per_second=settings.api_user_rps),
                    events=events,
                    stream_tokens=StreamTokens(
                        redis, broker.ledger.keys, settings.events_token_ttl_s
                    ),
                    rates=RatesCache(broker.ledger),
                    poses=PoseCache(store),
                    outage=outage,
                    logins=Logins(settings),
                    sessions=dashboard_sessions(redis, settings),
                    login_throttle=login_throttle(redis, settings),
                    webhooks=WebhookLedger(redis, settings.webhook_queue),
                    deliveries=JobLedger(redis, delivery_settings(settings)),
                )
            finally:
                await outage.close()
                await events.stop()
                await stream_client.aclose()
        finally:
            await store.close()
    finally:
        await broker.shutdown()


def dashboard_sessions(redis: Redis, settings: Settings) -> SessionStore:
    """The dashboard's session store with the lifetimes from ``settings``."""
    return SessionStore(redis, settings.queue_name, idle_s=settings.admin_session_idle_s,
                        max_s=settings.admin_session_max_s)  # fmt: skip


def login_throttle(redis: Redis, settings: Settings) -> LoginThrottle:
    """The dashboard's login throttle with the limits from ``settings``."""
    return LoginThrottle(
        redis, settings.queue_name,
        per_user=settings.admin_login_max_failures,
        per_address=settings.admin_login_max_failures_per_address,
        window_s=settings.admin_login_window_s,
        lockout_s=settings.admin_login_lockout_s,
    )  # fmt: skip


def lifespan(
    settings: Settings,
) -> Callable[[Litestar], contextlib.AbstractAsyncContextManager[None]]:
    """The app's lifespan: resources on ``app.state.resources`` while it runs."""

    @contextlib.asynccontextmanager
    async def run(app: Litestar) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            app.state.resources = resources
            freeze_startup_heap()
            yield

    return run
