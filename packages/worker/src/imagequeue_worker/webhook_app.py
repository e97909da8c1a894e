"""The webhook workers' broker: deliveries are jobs of their own queue.

``imagequeue-worker webhooks`` runs it (taskiq's CLI calls :func:`create_broker`). Its
queue is ``Settings.webhook_queue`` with its own rate limit (``WEBHOOK_RATE_LIMIT_MAX``),
slots (``WEBHOOK_CONCURRENCY``) and retry schedule (``WEBHOOK_RETRY_SCHEDULE_S``), so a slow
receiver never holds an image slot, and the engine's leases, stall recovery and dead
letters apply to deliveries as to any job. Each process also reads the image queue's
outbox (``webhook_dispatch``).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import msgspec
from taskiq import Context, TaskiqDepends, TaskiqEvents, TaskiqState

from imagequeue_common.contracts import DELIVER_WEBHOOK_TASK
from imagequeue_common.errors import TerminalJobError
from imagequeue_common.logs import configure_logging
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.context import CurrentJob
from imagequeue_common.queue.labels import ENGINE_LABELS
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.queue.retry import RetryPolicy
from imagequeue_common.redis_conn import blocking_client
from imagequeue_common.settings import Settings, load_settings
from imagequeue_common.webhook_ledger import WebhookLedger, delivery_settings
from imagequeue_common.webhook_secrets import WebhookSecrets
from imagequeue_common.webhooks import Delivery
from imagequeue_worker.app import quiet_taskiq_receiver
from imagequeue_worker.webhook_deliver import WebhookRuntime
from imagequeue_worker.webhook_dispatch import Dispatcher
from imagequeue_worker.webhook_send import webhook_client


def build_webhook_broker(settings: Settings) -> EngineBroker:
    """The delivery queue's broker with ``deliver_webhook`` registered (``settings``: the
    image queue's)."""
    broker = EngineBroker(delivery_settings(settings), settings.redis_url_or_default)
    broker.policy = RetryPolicy(schedule_ms=settings.webhook_schedule_ms or (0,))

    async def startup(state: TaskiqState) -> None:
        client = broker.ledger.client
        runtime = WebhookRuntime(
            broker, settings,
            webhook_client(settings.webhook_private_host_list, settings.webhook_timeout_s,
                           connections=settings.webhook_concurrency),
            WebhookSecrets(client, settings.queue_name),
            WebhookLedger(client, settings.webhook_queue),
        )  # fmt: skip
        state.webhooks = runtime
        state.webhook_blocking = blocking_client(settings.redis_url_or_default)
        images = JobLedger(client, settings)
        state.dispatcher = Dispatcher(runtime, images, state.webhook_blocking, broker.worker_id)
        state.dispatcher.start()

    async def shutdown(state: TaskiqState) -> None:
        if getattr(state, "dispatcher", None) is None:
            return
        await state.dispatcher.stop()
        await state.webhook_blocking.aclose()
        await state.webhooks.client.aclose()
        state.dispatcher = None

    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, startup)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, shutdown)

    @broker.task(task_name=DELIVER_WEBHOOK_TASK, **ENGINE_LABELS)
    async def deliver_webhook(
        payload: dict[str, Any], job: CurrentJob, runtime: Runtime
    ) -> dict[str, Any]:
        try:
            delivery = msgspec.convert(payload, Delivery)
        except msgspec.ValidationError as exc:
            raise TerminalJobError(f"invalid deliver_webhook payload: {exc}") from None
        return await runtime.deliver(delivery, job)

    return broker


def current_runtime(context: Annotated[Context, TaskiqDepends()]) -> WebhookRuntime:
    """taskiq dependency: this process's :class:`WebhookRuntime`."""
    runtime: WebhookRuntime | None = getattr(context.state, "webhooks", None)
    if runtime is None:
        raise TerminalJobError("this worker does not deliver webhooks")
    return runtime


Runtime = Annotated[WebhookRuntime, TaskiqDepends(current_runtime)]


def create_broker() -> EngineBroker:
    """Entry point for ``taskiq worker``: settings from the environment, once."""
    settings = load_settings(os.environ)
    configure_logging(settings.log_format, settings.log_level)
    quiet_taskiq_receiver()
    return build_webhook_broker(settings)
