"""A delivery job's run: one signed attempt, its record, and what follows from its outcome.

- delivered (2xx): done; the endpoint is healthy; the job's next event is queued;
- 410 Gone, a refused address, a disabled endpoint, a revoked key: dead-lettered now
  (:class:`DeliveryStoppedError`), and the next event is queued;
- anything else: :class:`DeliveryFailedError`, which the engine retries on
  ``WEBHOOK_RETRY_SCHEDULE_S``; on the last attempt the next event is queued first, and the
  engine dead-letters the delivery with the receiver's status and the start of its answer.

The endpoint's health is kept per owner: failing every attempt for
``WEBHOOK_DISABLE_AFTER_S`` disables it (``webhook_ledger``).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import httpx
import msgspec

from imagequeue_common.contracts import DELIVER_WEBHOOK_TASK
from imagequeue_common.errors import DeliveryFailedError, DeliveryStoppedError, DuplicateJobError
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.context import JobHandle
from imagequeue_common.settings import Settings
from imagequeue_common.webhook_ledger import AttemptRecord, WebhookLedger
from imagequeue_common.webhook_secrets import WebhookSecrets
from imagequeue_common.webhooks import Delivery
from imagequeue_worker.webhook_send import Attempt, send

log = logging.getLogger("imagequeue.webhooks")


class WebhookRuntime:
    """What a webhook worker process holds: the client, the secrets, the ledger, and the
    broker of the delivery queue (to queue the next event of a chain)."""

    def __init__(self, broker: EngineBroker, settings: Settings, client: httpx.AsyncClient,
                 secrets: WebhookSecrets, ledger: WebhookLedger) -> None:  # fmt: skip
        self.broker = broker
        self.settings = settings
        """The image queue's settings (the broker's are the delivery queue's)."""
        self.client = client
        self.secrets = secrets
        self.ledger = ledger

    async def queue(self, delivery: Delivery) -> None:
        """Queue ``delivery`` as a job (its ``msg_id`` is the job id: queueing it again,
        after a crash, changes nothing)."""
        labels = {"user_id": delivery.owner[:64], "ref": delivery.job_id[:64]}
        with contextlib.suppress(DuplicateJobError):
            await self.broker.submit(DELIVER_WEBHOOK_TASK, delivery.msg_id,
                                     [msgspec.to_builtins(delivery)], labels)  # fmt: skip

    async def advance(self, delivery: Delivery) -> None:
        """``delivery`` has ended: queue its job's next event, if one waits."""
        following = await self.ledger.chain_next(delivery)
        if following is not None and following.msg_id != delivery.msg_id:
            await self.queue(following)

    async def deliver(self, delivery: Delivery, job: JobHandle) -> dict[str, Any]:
        """Run one attempt of ``delivery`` (see the module docstring)."""
        endpoint = await self.ledger.endpoint(delivery.owner, delivery.url)
        if endpoint is not None and endpoint.disabled_at is not None:
            await self._stop(delivery, job, Attempt("disabled", None, endpoint.disabled_why, 0),
                             f"endpoint disabled: {endpoint.disabled_why}")  # fmt: skip
        secrets = await self.secrets.signing(delivery.key_id)
        if not secrets:
            gone = "the API key's webhook secret is gone (the key was revoked)"
            await self._stop(delivery, job, Attempt("refused", None, gone, 0), gone)
        attempt = await send(self.client, delivery.url, delivery.body.encode(), secrets,
                             delivery.msg_id)  # fmt: skip
        await self._record(delivery, job, attempt)
        if attempt.outcome == "delivered":
            await self.ledger.endpoint_ok(delivery.owner, delivery.url)
            await self.advance(delivery)
            return {"status": attempt.status, "ms": attempt.elapsed_ms, "attempt": job.attempt}
        why = _why(attempt)
        if await self.ledger.endpoint_failed(delivery.owner, delivery.url, why,
                                             self.settings.webhook_disable_after_s):  # fmt: skip
            log.warning("webhook endpoint of %s disabled: every delivery failed for %.0f s",
                        delivery.owner, self.settings.webhook_disable_after_s)  # fmt: skip
        if attempt.outcome in ("gone", "refused"):
            await self._stop(delivery, job, None, why)
        if job.attempt >= job.max_attempts:
            await self.ledger.count_dead()
            await self.advance(delivery)
        raise DeliveryFailedError(why)

    async def _stop(self, delivery: Delivery, job: JobHandle, attempt: Attempt | None,
                    why: str) -> None:  # fmt: skip
        """Dead-letter ``delivery`` now (raises), after recording ``attempt`` if given."""
        if attempt is not None:
            await self._record(delivery, job, attempt)
        await self.ledger.count_dead()
        await self.advance(delivery)
        raise DeliveryStoppedError(why)

    async def _record(self, delivery: Delivery, job: JobHandle, attempt: Attempt) -> None:
        record = AttemptRecord(at=time.time(), attempt=job.attempt, outcome=attempt.outcome,
                               status=attempt.status, detail=attempt.detail,
                               elapsed_ms=attempt.elapsed_ms)  # fmt: skip
        await self.ledger.record(delivery.msg_id, record)


def _why(attempt: Attempt) -> str:
    """The failure as its owner reads it: the status and the start of the answer."""
    if attempt.status is None:
        return attempt.detail
    answer = " ".join(attempt.detail.split())[:300]
    return f"HTTP {attempt.status}: {answer}" if answer else f"HTTP {attempt.status}"
