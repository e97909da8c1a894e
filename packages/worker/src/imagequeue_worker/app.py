"""Builds the worker's broker and scheduler; the taskiq CLI calls the factories below."""

from __future__ import annotations

import logging
import os

from taskiq import ScheduledTask, ScheduleSource, TaskiqScheduler
from taskiq.schedule_sources import LabelScheduleSource

from imagequeue_common.logs import configure_logging
from imagequeue_common.outage import RedisOutage
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings, load_settings
from imagequeue_worker.tasks import register_tasks


def build_broker(settings: Settings) -> EngineBroker:
    """A broker with every worker task registered."""
    broker = EngineBroker(settings, settings.redis_url_or_default)
    register_tasks(broker)
    return broker


def create_broker() -> EngineBroker:
    """Entry point for ``taskiq worker``: settings come from the environment, once."""
    settings = load_settings(os.environ)
    configure_logging(settings.log_format, settings.log_level)
    quiet_taskiq_receiver()
    return build_broker(settings)


class _DropTaskErrors(logging.Filter):
    """Drops taskiq's traceback for every failed run: the engine logs each outcome itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Exception found while executing function."


def quiet_taskiq_receiver() -> None:
    """taskiq logs every start at INFO and every failure with a traceback; keep neither."""
    receiver = logging.getLogger("taskiq.receiver.receiver")
    receiver.setLevel(logging.WARNING)
    if not any(isinstance(f, _DropTaskErrors) for f in receiver.filters):
        receiver.addFilter(_DropTaskErrors())


class EngineScheduler(TaskiqScheduler):
    """taskiq's scheduler, but a send that cannot reach Redis is one line per outage (the
    next tick sends again) instead of an unretrieved task exception with a traceback."""

    def __init__(self, broker: EngineBroker) -> None:
        super().__init__(broker, sources=[LabelScheduleSource(broker)])
        self.outage = RedisOutage(
            "scheduler",
            logging.getLogger("imagequeue.scheduler"),
            retry_s=broker.settings.redis_retry_ms / 1000,
            retrying="sending again at the next tick",
        )

    async def on_ready(self, source: ScheduleSource, task: ScheduledTask) -> None:
        """Send ``task`` now; an outage is noted, the task waits for its next tick."""
        with self.outage:
            await super().on_ready(source, task)


def create_scheduler() -> TaskiqScheduler:
    """Entry point for ``taskiq scheduler``: the cleanup runs on its cron label."""
    return EngineScheduler(create_broker())
