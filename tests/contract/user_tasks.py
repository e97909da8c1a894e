"""A team's own tasks on imagequeue's broker, written with taskiq's documented API only.

Run as a user would: ``taskiq worker tests.contract.user_tasks:broker [--ack-type …]`` or
``imagequeue-worker run --broker tests.contract.user_tasks:broker``. What a run did is
noted in Redis (``contract:{<queue>}:runs``) so tests can check it from outside.
"""

from __future__ import annotations

from typing import Annotated

from taskiq import Context, TaskiqDepends

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
