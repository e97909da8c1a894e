"""The worker's tasks, registered on a broker by :func:`register_tasks`."""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from imagequeue_common.contracts import (
    CLEAN_TASK,
    GENERATE_IMAGE_TASK,
    NOOP_TASK,
    GenerateImagePayload,
)
from imagequeue_common.errors import TerminalJobError
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.context import CurrentJob
from imagequeue_common.queue.labels import ENGINE_LABELS
from imagequeue_worker.resources import Pipeline, register_resources

log = logging.getLogger("imagequeue.worker")


def register_tasks(broker: EngineBroker) -> None:
    """Register every task of the worker on ``broker`` (explicitly, no import side effects)."""
    settings = broker.settings
    register_resources(broker)

    @broker.task(task_name=GENERATE_IMAGE_TASK, **ENGINE_LABELS)
    async def generate_image(
        payload: dict[str, Any], job: CurrentJob, pipeline: Pipeline
    ) -> dict[str, Any]:
        try:
            request = msgspec.convert(payload, GenerateImagePayload)
        except msgspec.ValidationError as exc:
            raise TerminalJobError(f"invalid generate_image payload: {exc}") from None
        result = await pipeline.run(request, job)
        return msgspec.to_builtins(result)  # type: ignore[no-any-return]

    @broker.task(task_name=CLEAN_TASK, schedule=[{"cron": settings.clean_cron}])
    async def clean() -> dict[str, int]:
        report = await broker.ledger.clean()
        log.info("cleaned %d completed, %d failed, %d cancelled jobs",
                 report.completed, report.failed, report.cancelled)  # fmt: skip
        return msgspec.to_builtins(report)  # type: ignore[no-any-return]

    @broker.task(task_name=NOOP_TASK, **ENGINE_LABELS)
    async def noop() -> None:
        return None
