"""Check 7 of the flood scenario, the fair share inside a priority, and Jain's index.

The engine claims the jobs of one priority by start-time fair queueing: round-robin in
effect, FIFO inside one user. A user who arrives with one job while others have many
waiting is owed one turn, not a wait behind their floods. From the job hashes (Redis
server ms), for the job ``j`` of every **single-job user** (a user with one job in the run):

- *waiting at t*: a job with ``created_at <= t < started_at`` (never started: waiting since
  its creation);
- ``N(j)``: the users with a job of ``j``'s priority waiting at ``j``'s ``created_at``,
  ``j``'s own user included — one turn of each is ``N(j)`` starts;
- ``C``, the capacity, the starts per second the stack sustains:
  ``min(rate / (1 s + RATE_LIMIT_GUARD_MS), slots / mean job time)`` (every upstream
  permit's window is the guard longer than the limit's second);
- ``T``, one job time: the longest a start can be held up by what already runs — a slot
  frees within the stub's longest run (60 s x scale), the limiter lets a start through
  within one permit window (1 s + guard) — whichever is longer;
- **fair share** ``N(j) / C``; **check 7**: every single-job user's wait
  (``started_at - created_at``) at most its fair share + ``T``.

Under FIFO a user arriving behind a flood waits for every job ahead of it, while its
``N(j)`` counts each flooder once: the check fails by about the floods' size over ``C``.
The engine's fair queueing puts a newcomer into the turn in progress, behind at most one
job of each other user: within ``N(j)``. (Self-clocked fair queueing, its first version,
put it after that turn as well: up to one more job of each flooder, which ``T`` absorbed
while the flooders numbered at most ``C x T``.) Beside the verdict, counted
without any clock: the jobs that started first beyond one per other user waiting, and the
users overtaken by later arrivals (none, if each turn goes in arrival order).

**Jain's index** ``J = (sum x)^2 / (n * sum x^2)`` over the single-job users, with
``x = wait / (fair share + T)``: each user's wait as a fraction of what round-robin allows
it, so ``J = 1`` when every user got the same fraction of its due. Raw waits would not do:
they differ by the backlog each user met on arrival, and a flooder's by its own flood (its
100th job waits for its 99 turns, which is fair). A user's place inside its turn is spread
evenly, so round-robin itself gives about 0.75-0.8 (``x`` uniform on ``[0, a]`` gives
0.75); and ``J`` has no scale (all waiting twice their bound gives 1): check 7 says whether
the waits are within the bound, ``J`` how evenly the users shared it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from loadtest.checks import Check, Facts, JobFacts, evaluate
from loadtest.options import Options
from loadtest.webhooks import check_webhooks

NAME = "every single-job user's wait within its fair share + one job time"


class Share(NamedTuple):
    """One single-job user's job against its fair share."""

    job_id: str
    user: str
    priority: str
    created_ms: int
    wait_s: float
    """``started_at - created_at``; infinite when it never started."""
    users_waiting: int
    """``N``: users with a job of its priority waiting when it was created, its own included."""
    ahead: int
    """Jobs of its priority that started while it waited."""
    overtaken: int
    """Of those, jobs created after it: later arrivals that went first."""
    bound_s: float
    """Its fair share ``N / C`` plus one job time."""

    @property
    def ratio(self) -> float:
        """``wait / bound``: at most 1 when the check holds for it."""
        return self.wait_s / self.bound_s


def capacity_per_s(options: Options) -> float:
    """``C``: ``min(rate / (1 s + guard), slots / mean job time)``, starts per second."""
    by_rate = options.rate_limit * 1000 / (1000 + options.rate_limit_guard_ms)
    mean = options.mean_latency_s
    return min(by_rate, options.slots / mean) if mean > 0 else by_rate


def one_job_s(options: Options) -> float:
    """``T``: the longer of the stub's longest run and one permit window (1 s + guard)."""
    return max(options.max_latency_s, (1000 + options.rate_limit_guard_ms) / 1000)


def jain_index(values: Iterable[float]) -> float | None:
    """``(sum x)^2 / (n * sum x^2)``: 1 when all are equal, down to ``1/n`` when one has
    everything; None for no values or an infinite one (a job that never started), 1 when
    all are 0 (all equal)."""
    xs = list(values)
    if not xs or not all(math.isfinite(x) for x in xs):
        return None
    squares = sum(x * x for x in xs)
    if squares == 0:
        return 1.0
    return sum(xs) ** 2 / (len(xs) * squares)


def fair_shares(jobs: Sequence[JobFacts], capacity: float, slack_s: float) -> list[Share]:
    """Every single-job user's job against its fair share ``N / capacity`` + ``slack_s``,
    in order of creation (see the module's docstring)."""
    per_user: defaultdict[str, int] = defaultdict(int)
    by_priority: defaultdict[str, list[JobFacts]] = defaultdict(list)
    for job in jobs:
        per_user[job.user] += 1
        by_priority[job.priority].append(job)
    shares = []
    for job in sorted(jobs, key=lambda j: j.created_at):
        if not job.user or per_user[job.user] != 1:
            continue
        t, started = job.created_at, _started(job)
        waiting = {job.user}
        ahead = overtaken = 0
        for other in by_priority[job.priority]:
            other_started = _started(other)
            if other.created_at <= t < other_started:
                waiting.add(other.user)
            if other is not job and t < other_started < started:
                ahead += 1
                overtaken += other.created_at > t
        wait = (started - t) / 1000
        shares.append(Share(job.job_id, job.user, job.priority, t, wait, len(waiting), ahead,
                            overtaken, len(waiting) / capacity + slack_s))  # fmt: skip
    return shares


def _started(job: JobFacts) -> float:
    return math.inf if job.started_at is None else job.started_at


def shares_of(facts: Facts) -> list[Share]:
    """The run's single-job users against their fair shares."""
    return fair_shares(facts.jobs, capacity_per_s(facts.options), one_job_s(facts.options))


def check_fair_share(facts: Facts) -> Check:
    """7 (flood): every single-job user's wait at most its fair share + one job time."""
    o = facts.options
    shares = shares_of(facts)
    expected = o.users - o.flooders
    over = [s for s in shares if s.wait_s > s.bound_s]
    passed = len(shares) == expected and not over
    detail = f"{len(shares)}/{expected} single-job users, {len(over)} over their bound"
    if shares:
        worst = max(shares, key=lambda s: s.ratio)
        extra = max(s.ahead - (s.users_waiting - 1) for s in shares)
        late = [s.overtaken for s in shares if s.overtaken]
        jain = _round(jain_index(s.ratio for s in shares))
        detail += (
            f"; worst wait/bound {worst.ratio:.3f} ({worst.user}: waited {worst.wait_s:.2f} s, "
            f"{worst.users_waiting} users waiting on arrival, {worst.ahead} jobs started "
            f"first, bound {worst.bound_s:.2f} s); Jain {jain}"
            f"; jobs started first minus other users waiting: at most {extra:+d}; "
            f"{len(late)} overtaken by later arrivals (at most {max(late, default=0)} jobs); "
            f"capacity {capacity_per_s(o):.2f}/s, one job time {one_job_s(o):.3f} s"
        )
    return Check(7, NAME, passed, detail)


def figures(facts: Facts) -> dict[str, Any]:
    """The summary line's fairness figures, in the flood scenario (none in the mixed one,
    where strict priority makes the lower tiers wait on purpose): Jain's index over the
    single-job users and the fair-share check's own figures."""
    if not facts.options.flood:
        return {}
    shares = shares_of(facts)
    ratios = sorted(s.ratio for s in shares)
    return {
        "jain_index": _round(jain_index(ratios)),
        "fair_share": {
            "single_job_users": len(shares),
            "over_bound": sum(r > 1 for r in ratios),
            "wait_vs_bound_max": _round(ratios[-1]) if ratios else None,
            "wait_vs_bound_p50": _round(ratios[len(ratios) // 2]) if ratios else None,
            "users_waiting_max": max((s.users_waiting for s in shares), default=None),
            "ahead_beyond_one_turn_max": max(
                (s.ahead - (s.users_waiting - 1) for s in shares), default=None
            ),
            "overtaken_by_later": sum(s.overtaken > 0 for s in shares),
            "capacity_per_s": round(capacity_per_s(facts.options), 3),
            "one_job_s": round(one_job_s(facts.options), 3),
        },
    }


def _round(value: float | None) -> float | str | None:
    if value is None:
        return None
    return round(value, 3) if math.isfinite(value) else "inf"


def all_checks(facts: Facts) -> list[Check]:
    """Checks 1-6, in the flood scenario check 7, with ``--webhooks`` check 8."""
    checks = evaluate(facts)
    if facts.options.flood:
        checks.append(check_fair_share(facts))
    if facts.options.webhooks:
        checks.append(check_webhooks(facts))
    return checks
