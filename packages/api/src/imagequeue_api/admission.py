"""Admission control: a new image job is refused (429) before anything is stored when the
queue already holds ``MAX_QUEUE_LENGTH`` jobs, or when the wait the job would have before it
starts, predicted from where it would stand (fair share included) and the queue's measured
rates, is over ``MAX_QUEUE_WAIT_S``.

The length is held exactly by the enqueue script as well; this check comes first so that
``POST /api/v1/characters`` refuses before it stores the character. A request that would be
answered with the job already queued for its character and pose (de-duplication) is never
refused: it adds nothing.
"""

from __future__ import annotations

import math

from imagequeue_api.problems import Problem
from imagequeue_api.resources import Resources
from imagequeue_common.contracts import Priority

RETRY_FULL_S = 10
"""``Retry-After`` for a full queue when no live worker gives a drain rate."""


async def admit(
    resources: Resources, user_id: str, priority: Priority, dedup_key: str = ""
) -> None:
    """Raise a 429 :class:`Problem` when a new job of ``user_id`` at ``priority`` is not to
    be queued now; its body says the predicted wait and the limit, ``Retry-After`` when to
    ask again."""
    settings, ledger = resources.settings, resources.broker.ledger
    most_queued, most_wait = settings.max_queue_length, settings.max_queue_wait_s
    if most_queued == 0 and most_wait == 0:
        return
    where = await ledger.predict(user_id, priority, dedup_key)
    if where.duplicate_of:
        return
    rates = await resources.rates.get()
    if most_queued and where.queued >= most_queued:
        excess = where.queued - most_queued + 1
        retry = excess / rates.start_rate if rates.start_rate > 0 else RETRY_FULL_S
        await ledger.client.hincrby(ledger.keys.metrics, "refused_length", 1)
        raise Problem(
            429,
            f"The queue is full: {where.queued} jobs are waiting (at most {most_queued}); "
            "try again later.",
            slug="queue-full",
            headers={"Retry-After": str(max(1, math.ceil(retry)))},
            extra={"queued": where.queued, "maxQueueLength": most_queued},
        )
    wait = rates.start_in_s(where.position, where.active, priority, where.distance)
    if most_wait and wait is not None and wait > most_wait:
        # Nothing new ahead of it, the wait shrinks by a second each second.
        await ledger.client.hincrby(ledger.keys.metrics, "refused_wait", 1)
        raise Problem(
            429,
            f"A new {priority.value} job would wait about {wait:.0f} s to start, over the "
            f"{most_wait} s this queue allows; try again later.",
            slug="queue-wait",
            headers={"Retry-After": str(max(1, math.ceil(wait - most_wait)))},
            extra={"predictedWaitSeconds": round(wait, 1), "maxQueueWaitSeconds": most_wait,
                   "position": where.position},
        )  # fmt: skip
