"""A job this worker holds, from its claim to the recorded end of its run.

Two things end a run, in either order, and its end is recorded (*settled*: handed to the
finisher) only once both have happened:

- taskiq's **ack**, at the moment the task's ``ack_type`` says: ``when_received`` (before
  the run), ``when_executed`` (after the run, before the middlewares' ``post_execute``),
  ``when_saved`` (after the result is stored: the default) or ``manual`` (the task calls
  ``context.ack()`` — or never does);
- the run's **outcome** (complete, retry later, dead-letter, cancelled), decided in
  ``post_execute`` from the run's result.

A message taskiq acked without running it (malformed, unknown task name) settles as failed
at the ack. A run that ended without an ack is not the worker's to finish: the heartbeat
stops renewing its lease, so the job is delivered again once the lease runs out, as after
a worker's death (``STALL_LIMIT`` times, then dead-lettered) — the lease belongs to a live
run, not to an entry in a dict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from imagequeue_common.queue.retry import Outcome

UNRUNNABLE = Outcome(
    "failed", error="the worker could not run this message (malformed, or unknown task name)"
)


@dataclass(slots=True)
class Lease:
    """A job this worker holds, from claim to the recorded end of its run."""

    job_id: str
    token: str
    attempts: int
    max_attempts: int
    outcome: Outcome | None = None
    """Decided when the run ended (``post_execute``)."""
    error: BaseException | None = None
    """What the run raised, if it did."""
    lost: bool = False
    """Recovery took the job back (the heartbeat or the run found out): its end must not
    be recorded, and is not promised."""
    started: float = field(default_factory=time.monotonic)
    running: bool = False
    """taskiq found the task and runs it (``pre_execute`` was called)."""
    acked: bool = False
    ended_at: float | None = None
    """When the run ended (``time.monotonic()``), or None while it runs."""
    settled: bool = False
    """Its end was handed to the finisher (or dropped, when the lease was lost)."""
    again_ms: int | None = None
    """The run sent its own job again (``context.requeue()``, a retry middleware): it is
    delivered again this many ms after the run ends, whatever the run's result."""

    def ack(self) -> Outcome | None:
        """taskiq acked the message: the outcome to record now, if it is known."""
        self.acked = True
        if not self.running:
            return UNRUNNABLE
        return self.outcome

    def end(self, outcome: Outcome, error: BaseException | None) -> Outcome | None:
        """The run ended with ``outcome`` (raising ``error``): the outcome to record now, if
        acked already."""
        self.outcome, self.error, self.ended_at = outcome, error, time.monotonic()
        return outcome if self.acked else None

    @property
    def ran_s(self) -> float:
        """How long the run took (so far, while it runs)."""
        return (self.ended_at or time.monotonic()) - self.started

    def unacked_for(self, seconds: float, now: float) -> bool:
        """The run ended at least ``seconds`` ago, and nobody acked it."""
        return (
            not self.acked
            and not self.settled
            and self.ended_at is not None
            and now - self.ended_at >= seconds
        )
