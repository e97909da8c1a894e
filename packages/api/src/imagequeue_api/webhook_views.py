"""Deliveries and endpoints → their API answers."""

from __future__ import annotations

import msgspec

from imagequeue_api.resources import Resources
from imagequeue_api.webhook_schemas import AttemptOut, DeliveryOut, DeliveryState, EndpointOut
from imagequeue_common.contracts import JobState
from imagequeue_common.queue.admin import QueueAdmin
from imagequeue_common.queue.formatter import MsgspecFormatter
from imagequeue_common.queue.jobs import Job
from imagequeue_common.webhook_ledger import AttemptRecord, Endpoint
from imagequeue_common.webhooks import Delivery

_FORMATTER = MsgspecFormatter()
_STATES: dict[JobState, DeliveryState] = {
    JobState.COMPLETED: "succeeded", JobState.FAILED: "failed", JobState.CANCELLED: "failed",
    JobState.EXPIRED: "failed",
}  # fmt: skip


async def deliveries_view(
    resources: Resources, owner: str, job_id: str | None, limit: int
) -> list[DeliveryOut]:
    """The newest ``limit`` deliveries of ``owner`` (of ``job_id`` only, when given)."""
    ledger = resources.deliveries
    index = ledger.keys.by_ref(job_id) if job_id else ledger.keys.by_user(owner)
    ids: list[str] = await ledger.client.zrevrange(index, 0, limit - 1)  # type: ignore[assignment]
    jobs = [j for j in await QueueAdmin(ledger).load(ids) if j.user == owner]
    return await delivery_views(resources, jobs)


async def delivery_views(resources: Resources, jobs: list[Job]) -> list[DeliveryOut]:
    """Delivery jobs as their owner sees them, with their attempts (one read for all)."""
    logs = await resources.webhooks.attempts([j.id for j in jobs])
    return [out for j in jobs if (out := delivery_view(j, logs.get(j.id, []))) is not None]


def delivery_view(job: Job, log: list[AttemptRecord]) -> DeliveryOut | None:
    """One delivery job as its owner sees it (None for a job that is no delivery)."""
    try:
        delivery = msgspec.convert(_FORMATTER.loads(job.payload.encode()).args[0], Delivery)
    except (msgspec.ValidationError, msgspec.DecodeError, IndexError):
        return None
    last = log[-1] if log else None
    return DeliveryOut(
        id=delivery.msg_id, job_id=delivery.job_id, event=delivery.event, url=delivery.url,
        state=_STATES.get(job.state, "pending"), attempts=job.attempts,
        max_attempts=job.max_attempts, last_status=last.status if last else None,
        last_error=job.error[:500] if job.error else None,
        next_attempt_at=job.due_at / 1000 if job.state == JobState.DELAYED and job.due_at
        else None,
        created_at=job.created_at / 1000,
        finished_at=job.finished_at / 1000 if job.finished_at else None,
        attempt_log=[AttemptOut(a.at, a.attempt, a.outcome, a.status, a.detail, a.elapsed_ms)
                     for a in log],
    )  # fmt: skip


def endpoint_view(endpoint: Endpoint) -> EndpointOut:
    return EndpointOut(endpoint.url, endpoint.failing_since, endpoint.last_error,
                       endpoint.disabled_at, endpoint.disabled_why)  # fmt: skip
