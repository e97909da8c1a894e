"""A taskiq receiver that hands over already-claimed jobs without a task per message.

taskiq's receiver asks the broker for each message through a new asyncio task and two
``asyncio.wait`` calls. When one claim leased several jobs (one per free slot), the ones
after the first are already in the broker's hands: this receiver takes them directly,
after taking a delivery slot exactly as taskiq does, so the per-slot limit is unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskiq.acks import AckableMessage
from taskiq.receiver import Receiver

from imagequeue_common.queue.broker import EngineBroker


class EngineReceiver(Receiver):
    """taskiq ``Receiver`` with a fast path for jobs the broker has already claimed."""

    async def _get_prefetched_message(
        self, state: Any, finish_event: asyncio.Event, finish_waiter: asyncio.Task[bool]
    ) -> bytes | AckableMessage | None:
        broker = self.broker
        if (
            isinstance(broker, EngineBroker)
            and broker.has_ready()
            and not self.sem_prefetch.locked()
            and not finish_event.is_set()
        ):
            await self.sem_prefetch.acquire()  # free: returns at once
            state.owns_delivery_slot = True
            return broker.take_ready()
        message: bytes | AckableMessage | None = await super()._get_prefetched_message(
            state, finish_event, finish_waiter
        )
        return message
