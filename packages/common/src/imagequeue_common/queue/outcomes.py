"""The middleware that turns each run's result into the job's next state.

It sees the run begin (``pre_execute``: the lease's run is live) and end (``post_execute``:
the retry policy decides complete, retry later, dead-letter or cancelled from the result),
and hands the outcome to whatever holds the lease — the broker records it, and logs the
seed's lifecycle line, once taskiq has acked too (see ``queue.lease``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec
from pydantic_core import PydanticSerializationError, to_jsonable_python
from taskiq import AsyncBroker, NoResultError, TaskiqMessage, TaskiqMiddleware, TaskiqResult

from imagequeue_common.errors import LeaseLostError
from imagequeue_common.queue.lease import Lease
from imagequeue_common.queue.retry import Outcome, RetryPolicy


@runtime_checkable
class LeaseHolder(Protocol):
    """What the middleware needs of its broker (``EngineBroker``)."""

    policy: RetryPolicy

    def lease(self, job_id: str) -> Lease | None:
        """This worker's lease on ``job_id``, if it holds one."""

    def settle(self, lease: Lease, outcome: Outcome) -> None:
        """Record the end of ``lease``'s run as ``outcome``."""


class OutcomeMiddleware(TaskiqMiddleware):
    """Decides each run's end (complete, retry later, dead-letter, cancelled) from its result."""

    _holder: LeaseHolder | None = None

    def set_broker(self, broker: AsyncBroker) -> None:
        """Keep the broker, and whether it holds leases: decided once here, since a check
        against a Protocol costs tens of microseconds, twice per run."""
        super().set_broker(broker)
        self._holder = broker if isinstance(broker, LeaseHolder) else None

    def _lease(self, message: TaskiqMessage) -> tuple[LeaseHolder, Lease] | None:
        holder = self._holder
        if holder is None:
            return None
        lease = holder.lease(message.task_id)
        return None if lease is None else (holder, lease)

    def pre_execute(self, message: TaskiqMessage) -> TaskiqMessage:
        """The lease's run is live: an ack from now on waits for its outcome."""
        if (held := self._lease(message)) is not None:
            held[1].running = True
        return message

    def post_execute(self, message: TaskiqMessage, result: TaskiqResult[Any]) -> None:
        """Decide the outcome; record it now if taskiq acked already, else at the ack."""
        if (held := self._lease(message)) is None:
            return
        holder, lease = held
        error = result.error if result.is_err else None
        if isinstance(error, NoResultError):  # the task asked for no result: it is done
            error = None
        if isinstance(error, LeaseLostError):
            lease.lost = True
        if lease.again_ms is not None:  # sent again by itself: that is its end
            outcome = Outcome("retry", value=str(lease.again_ms))
        else:
            value = "" if result.is_err else _encode_result(result.return_value)
            outcome = holder.policy.decide(
                attempts=lease.attempts, max_attempts=lease.max_attempts, error=error,
                value=value,
            )  # fmt: skip
        if (ready := lease.end(outcome, error)) is not None:
            holder.settle(lease, ready)


def _encode_result(value: object) -> str:
    """A run's return value as JSON, as taskiq's own serialisation would write it (pydantic
    models, dataclasses, datetimes...); its ``repr`` only when JSON cannot hold it."""
    try:
        return msgspec.json.encode(value).decode()
    except (TypeError, ValueError):
        pass
    try:
        return msgspec.json.encode(to_jsonable_python(value)).decode()
    except (TypeError, ValueError, PydanticSerializationError):
        return msgspec.json.encode(repr(value)).decode()
