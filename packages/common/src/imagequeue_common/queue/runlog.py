"""The lifecycle lines for the end of a run, in the seed's words (never the payload or prompt).

What a line promises is what will be recorded: a run whose lease was lost says so instead of
announcing a retry that nobody will schedule.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from imagequeue_common.errors import JobFailureError
from imagequeue_common.outage import unreachable
from imagequeue_common.queue.retry import Outcome

if TYPE_CHECKING:
    from imagequeue_common.queue.lease import Lease

log = logging.getLogger("imagequeue.engine")

_ENDED = {"completed": "completed", "cancelled": "was cancelled", "retry": "failed",
          "failed": "failed"}  # fmt: skip


def log_outcome(lease: Lease, outcome: Outcome, error: BaseException | None, ran_s: float) -> None:
    """The seed's lifecycle lines for the end of a run (never the payload or prompt)."""
    extra = {"job_id": lease.job_id, "attempt": lease.attempts, "outcome": outcome.kind}
    if outcome.kind == "completed" and not lease.lost:
        log.info("✓ Job %s completed in %.2fs", lease.job_id, ran_s, extra=extra)
        return
    if lease.again_ms is not None and not lease.lost:
        log.info("Job %s sent again by its task - runs again in %.1fs", lease.job_id,
                 lease.again_ms / 1000, extra={**extra, "outcome": "requeued"})  # fmt: skip
        return
    if outcome.kind == "cancelled" and not lease.lost:
        log.info("Job %s cancelled while running", lease.job_id, extra=extra)
        return
    # A traceback only for errors the task did not raise on purpose; an unreachable Redis
    # is the outage the engine's loops log once, not a fault of this job.
    exc_info = error if error is not None and not isinstance(error, JobFailureError) else None
    if exc_info is not None and unreachable(exc_info) is not None:
        exc_info = None
    if lease.lost:
        log.warning(
            "✗ Job %s %s after %d attempts here, but its lease had been lost: nothing "
            "recorded, the job is in the hands of whoever holds it now%s",
            lease.job_id, _ENDED[outcome.kind], lease.attempts,
            f" ({outcome.error})" if outcome.error else "",
            extra={**extra, "outcome": "lease_lost"}, exc_info=exc_info,
        )  # fmt: skip
        return
    if outcome.kind == "retry":
        log.warning(
            "✗ Job %s failed after %d attempts: %s - retry %d/%d in %.1fs",
            lease.job_id, lease.attempts, outcome.error, lease.attempts,
            lease.max_attempts - 1, int(outcome.value) / 1000, extra=extra, exc_info=exc_info,
        )  # fmt: skip
        return
    # The stored detail's traceback is left out: exc_info logs it, when wanted.
    log.error(
        "✗ Job %s failed after %d attempts: %s - moved to the dead-letter queue",
        lease.job_id, lease.attempts, outcome.error, extra=extra, exc_info=exc_info,
    )  # fmt: skip
