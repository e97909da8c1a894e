"""A team's own tasks on imagequeue's broker, written with taskiq's documented API only.

Run as a user would: ``taskiq worker tests.contract.user_tasks:broker [--ack-type …]`` or
``imagequeue-worker run --broker tests.contract.user_tasks:broker``. What a run did is
noted in Redis (``contract:{<queue>}:runs``) so tests can check it from outside.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel
from taskiq import Context, NoResultError, SmartRetryMiddleware, TaskiqDepends
from taskiq.depends.progress_tracker import ProgressTracker, TaskState

from imagequeue_worker.app import create_broker

broker = create_broker()


async def _note_run(context: Context) -> int:
    """This task id's run number (1 for the first)."""
    queue = broker.settings.queue_name
    runs = await broker.ledger.client.hincrby(f"contract:{{{queue}}}:runs", context.message.task_id)
    return int(runs)


@broker.task
async def add(a: int, b: int, context: Annotated[Context, TaskiqDepends()]) -> int:
    """The plainest task: its ack comes whenever the worker's ``--ack-type`` says."""
    await _note_run(context)
    return a + b


@broker.task(rate_limited=True)
async def add_under_the_limit(a: int, b: int) -> int:
    """A plain task that asks for the GPU's rate limit (``RATE_LIMIT_MAX``), as
    ``generate_image`` has it."""
    return a + b


@broker.task(ack_type="when_executed")
async def add_acked_when_executed(
    a: int, b: int, context: Annotated[Context, TaskiqDepends()]
) -> int:
    """The ack moment set per task, by label."""
    await _note_run(context)
    return a + b


@broker.task(ack_type="manual")
async def add_and_ack(a: int, b: int, context: Annotated[Context, TaskiqDepends()]) -> int:
    """Acks by hand, halfway through the run."""
    await _note_run(context)
    await context.ack()
    return a + b


@broker.task(ack_type="manual")
async def never_acks(context: Annotated[Context, TaskiqDepends()]) -> int:
    """Ends without ever acking: the message is the broker's to deliver again."""
    return await _note_run(context)


class Thumbnail(BaseModel):
    """A pydantic model as a task's argument and return value."""

    url: str
    size: int


@broker.task
async def resize(thumb: Thumbnail, context: Annotated[Context, TaskiqDepends()]) -> Thumbnail:
    """Gets a model (parsed from JSON by taskiq) and returns one."""
    await _note_run(context)
    assert isinstance(thumb, Thumbnail), type(thumb)  # a dict here would fail the run
    return Thumbnail(url=thumb.url, size=thumb.size * 2)


@broker.task
async def refuses(context: Annotated[Context, TaskiqDepends()]) -> None:
    """Raises a plain exception: a task that asked for no retries fails at once."""
    await _note_run(context)
    raise LookupError("no such image: a.png")


@broker.task
async def reports(
    context: Annotated[Context, TaskiqDepends()],
    progress: Annotated[ProgressTracker[dict[str, int]], TaskiqDepends()],
) -> int:
    """Reports progress through taskiq's ProgressTracker, then waits to be looked at."""
    await _note_run(context)
    await progress.set_progress(TaskState.STARTED, {"done": 3, "of": 4})
    queue = broker.settings.queue_name
    await broker.ledger.client.blpop([f"contract:{{{queue}}}:go"], timeout=20)
    return 4


@broker.task
async def wants_no_result(context: Annotated[Context, TaskiqDepends()]) -> None:
    """Raises taskiq's NoResultError: done, with nothing to store."""
    await _note_run(context)
    raise NoResultError


@broker.task
async def requeues_once(context: Annotated[Context, TaskiqDepends()]) -> str:
    """Sends itself again on its first run (taskiq's ``context.requeue()``)."""
    if await _note_run(context) == 1:
        await context.requeue()
    return str(context.message.labels.get("X-Taskiq-requeue", ""))


@broker.task(retry_on_error=True, max_retries=3)
async def fails_twice(context: Annotated[Context, TaskiqDepends()]) -> int:
    """Retried by taskiq's SmartRetryMiddleware (added below): fails twice, then returns."""
    run = await _note_run(context)
    if run < 3:
        raise ConnectionError(f"upstream down (run {run})")
    return run


@broker.task(retry_on_error=True, max_retries=2)
async def always_fails(context: Annotated[Context, TaskiqDepends()]) -> None:
    """Retried by SmartRetryMiddleware until it gives up."""
    await _note_run(context)
    raise PermissionError("the upstream refuses this key")


broker.add_middlewares(SmartRetryMiddleware(default_delay=0.05))
