"""The load test's targets, checked against what the run left behind.

1. no failed requests (Locust's statistics, and no exception inside a user);
2. API latency over the whole run: p95 < 200 ms and p99 < 500 ms, over the API's own
   requests (create a character, read a job) — image downloads are static files that the
   API process serves here only because no CDN is configured, so they are reported beside
   it but not held to the API's target;
3. the stub never saw more submissions than the rate limit in any sliding 1-second window;
4. every character got exactly one image (read from the store), every user exactly one
   character (a flooder its ``--flood-jobs``), one file per image;
5. the drain — first POST to last completion (the jobs' ``finished_at``, Redis server time)
   — at most 5 % over the physical limit ``max(N / rate, N * mean / slots) + mean``, with
   the mean latency taken from the stub's configuration (30-60 s times the scale). Only
   over: a sliding-window limiter lets the first ``rate`` jobs start at once, so a perfect
   queue drains one window *under* ``N / rate``; not going faster than the limit allows is
   check 3's business;
6. the ETA answered at creation (``imageJob.etaSeconds``) against the job's real time from
   ``created_at`` to ``finished_at``: per tier, the median of ``|ETA - actual| / actual`` at
   most 15 % — or, where the ``floor`` (the median error of the best ETA that cannot see
   the future, see ``eta_floor``) is above 15 %, at most the floor: no ETA told at creation
   can know the higher-priority jobs still to come or how long the job's own run will be.
   The p90 is reported beside it.

N counts the run's characters: one per user, and a flooder's many in the flood scenario,
which adds check 7, the fair share (``loadtest.fairness``).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Final

import msgspec

from loadtest.campaign import API_NAMES, GET_IMAGE, Histogram, Results, WebhookFacts
from loadtest.locust_csv import StatsRow
from loadtest.options import FLOOD_TIER, Options

P95_MS: Final = 200
P99_MS: Final = 500
DRAIN_TOLERANCE: Final = 0.05
ETA_TARGET: Final = 0.15
TIERS: Final = ("premium", "regular", "bulk")


class JobFacts(msgspec.Struct, frozen=True):
    """One image job as the queue recorded it (Redis server milliseconds)."""

    job_id: str
    priority: str
    state: str
    created_at: int
    started_at: int | None
    finished_at: int | None
    attempts: int
    user: str = ""


class Facts(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the checks and the report read, gathered before the stack stops."""

    options: Options
    queue: str
    """The run's queue name (every key of the run has it as its hash tag)."""
    locust_exit: int | None
    stats: list[StatsRow]
    failures: list[str]
    exceptions: list[str]
    results: Results | None
    """None when Locust wrote no results (it crashed or was killed)."""
    jobs: list[JobFacts]
    images: dict[str, int]
    """Character id → images the store holds for it (-1: no such character)."""
    characters_per_user: dict[str, int]
    planned: dict[str, int]
    """User id → the characters it was to make (1; a flooder its ``--flood-jobs``)."""
    files: int
    stub_peak_per_second: int
    stub_submissions: int
    stub_statuses: dict[str, int]
    redis_version: str
    webhooks: WebhookFacts | None = None
    """``--webhooks``: the completed jobs and what the receiver heard."""


class Check(msgspec.Struct, frozen=True):
    """One target: its number, what it demands, whether it was met, and the figures."""

    number: int
    name: str
    passed: bool
    detail: str

    def line(self) -> str:
        """``PASS 1 name: detail``."""
        return f"{'PASS' if self.passed else 'FAIL'} {self.number} {self.name}: {self.detail}"


def percentile(histograms: Iterable[Histogram], fraction: float) -> float | None:
    """The response time below which ``fraction`` of the requests fell (Locust's rule)."""
    merged: Counter[int] = Counter()
    for histogram in histograms:
        merged.update(histogram.response_times)
    total = sum(merged.values())
    if total == 0:
        return None
    allowed_above = int(total * fraction)
    seen = 0
    for value in sorted(merged, reverse=True):
        seen += merged[value]
        if total - seen <= allowed_above:
            return float(value)
    return 0.0


def physical_limit_s(options: Options) -> float:
    """``max(N / rate, N * mean / slots) + mean``: the fastest any queue could drain."""
    n, mean = options.jobs, options.mean_latency_s
    return max(n / options.rate_limit, n * mean / options.slots) + mean


def api_histograms(facts: Facts) -> list[Histogram]:
    """The histograms of the requests the API latency target covers."""
    if facts.results is None:
        return []
    return [h for h in facts.results.histograms if h.name in API_NAMES]


def drain_s(facts: Facts) -> float | None:
    """First POST to last completion, or None while a job is unfinished or missing."""
    outcomes = facts.results.outcomes if facts.results else []
    posted = [o.posted_at for o in outcomes if o.posted_at is not None]
    finished = [j.finished_at for j in facts.jobs if j.state == "completed" and j.finished_at]
    if not posted or len(finished) < facts.options.jobs:
        return None
    return max(finished) / 1000 - min(posted)


def check_failures(facts: Facts) -> Check:
    """1: no failed request, no exception in a user, Locust exited cleanly."""
    total = next((r for r in facts.stats if r.name == "Aggregated"), None)
    requests, failed = (total.requests, total.failures) if total else (0, 0)
    passed = (total is not None and requests > 0 and failed == 0 and not facts.exceptions
              and facts.results is not None and facts.locust_exit == 0)  # fmt: skip
    detail = (f"{requests} requests, {failed} failed, {len(facts.exceptions)} user exceptions, "
              f"locust exit {facts.locust_exit}")  # fmt: skip
    problems = [*facts.failures, *facts.exceptions][:3]
    if facts.results is None:
        problems.append("Locust wrote no results")
    return Check(1, "no failed requests", passed, "; ".join([detail, *problems]))


def check_latency(facts: Facts) -> Check:
    """2: API p95 < 200 ms and p99 < 500 ms over the whole run."""
    api = api_histograms(facts)
    p95, p99 = percentile(api, 0.95), percentile(api, 0.99)
    passed = p95 is not None and p99 is not None and p95 < P95_MS and p99 < P99_MS
    images = [h for h in facts.results.histograms if h.name == GET_IMAGE] if facts.results else []
    detail = (f"API p95 {p95} ms, p99 {p99} ms over {sum(h.requests for h in api)} requests "
              f"(targets {P95_MS}/{P99_MS}); image downloads, not included: "
              f"p95 {percentile(images, 0.95)} ms")  # fmt: skip
    return Check(2, f"API p95 < {P95_MS} ms and p99 < {P99_MS} ms", passed, detail)


def check_upstream(facts: Facts) -> Check:
    """3: the stub's busiest sliding second within the rate limit."""
    limit = facts.options.rate_limit
    peak = facts.stub_peak_per_second
    passed = 0 < peak <= limit
    detail = f"peak {peak} submissions in 1 s (limit {limit}), {facts.stub_submissions} in all"
    return Check(3, "upstream never above the rate limit", passed, detail)


def check_images(facts: Facts) -> Check:
    """4: every character exactly one image, every user exactly its planned characters."""
    jobs = facts.options.jobs
    outcomes = facts.results.outcomes if facts.results else []
    made = [o.character_id for o in outcomes if o.character_id]
    wrong = sorted(c for c, n in facts.images.items() if n != 1)
    extra = sorted(u for u, n in facts.characters_per_user.items() if n != facts.planned[u])
    fetched = sum(o.image_ok for o in outcomes)
    passed = (len(made) == jobs and not wrong and not extra and facts.files == jobs
              and fetched == jobs)  # fmt: skip
    planned = "their planned characters" if facts.options.flood else "one character"
    detail = (f"{len(made)}/{jobs} characters, {len(facts.images) - len(wrong)} with exactly "
              f"one image, {len(extra)} users with other than {planned}, {facts.files} "
              f"files, {fetched} PNGs fetched")  # fmt: skip
    if wrong:
        detail += f"; e.g. {wrong[0]} has {facts.images[wrong[0]]}"
    return Check(4, "every character got exactly one image", passed, detail)


def check_drain(facts: Facts) -> Check:
    """5: the drain at most 5 % over the physical limit."""
    limit = physical_limit_s(facts.options)
    drain = drain_s(facts)
    if drain is None:
        unfinished = facts.options.jobs - sum(j.state == "completed" for j in facts.jobs)
        detail = f"not drained: {unfinished} of {facts.options.jobs} jobs unfinished"
        return Check(5, "drain at most 5 % over the physical limit", False, detail)
    ratio = drain / limit
    passed = ratio <= 1 + DRAIN_TOLERANCE
    detail = (f"{drain:.2f} s against {limit:.2f} s (ratio {ratio:.3f}; mean latency "
              f"{facts.options.mean_latency_s:g} s from the stub's config)")  # fmt: skip
    return Check(5, "drain at most 5 % over the physical limit", passed, detail)


def eta_errors(facts: Facts) -> dict[str, dict[str, float | int | str | None]]:
    """Per tier: completed jobs, how many had no ETA, and the median and p90 of
    ``|ETA at creation - actual| / actual``, actual = ``finished_at - created_at``, and the
    median ``floor`` (``eta_floor``: the error of the best ETA blind to the future)."""
    outcomes = facts.results.outcomes if facts.results else []
    told = {o.job_id: (o.tier, o.eta_s) for o in outcomes if o.job_id}
    tiers = (FLOOD_TIER,) if facts.options.flood else TIERS
    errors: dict[str, list[float]] = {t: [] for t in tiers}
    unseen: dict[str, list[float]] = {t: [] for t in tiers}
    missing: Counter[str] = Counter()
    done = [j for j in facts.jobs if j.state == "completed" and j.finished_at and j.started_at]
    floor = eta_floor((j.job_id, j.created_at, j.started_at or 0, j.finished_at or 0)
                       for j in done)  # fmt: skip
    for job in done:
        if job.job_id not in told:
            continue
        tier, eta = told[job.job_id]
        unseen[tier].append(floor[job.job_id])
        actual = ((job.finished_at or 0) - job.created_at) / 1000
        if eta is None or actual <= 0:
            missing[tier] += 1  # no ETA told is as wrong as any: an infinite error
            errors[tier].append(math.inf)
            continue
        errors[tier].append(abs(eta - actual) / actual)
    figures: dict[str, dict[str, float | int | str | None]] = {}
    for name, found in errors.items():
        found.sort()
        figures[name] = {"jobs": len(found), "no_eta": missing[name],
                         "median": _quantile(found, 0.5), "p90": _quantile(found, 0.9),
                         "floor": _quantile(sorted(unseen[name]), 0.5)}  # fmt: skip
    return figures


def eta_floor(jobs: Iterable[tuple[str, int, int, int]]) -> dict[str, float]:
    """Per job ``(id, created, started, finished)`` (ms): the relative error of the best
    ETA anyone could tell at creation without seeing the future — exact about every job
    already in the queue, and the mean job time for its own run. What it still misses:
    the wait for jobs that did not exist yet (higher priorities that arrived later and
    started first: a forecast can only guess them) and how far the job's own run was from
    the mean (only the upstream knows that in advance)."""
    jobs = list(jobs)
    starts = sorted((started, created) for _, created, started, _ in jobs)
    mean_run = statistics.fmean(f - s for _, _, s, f in jobs) if jobs else 0.0
    out = {}
    for job_id, created, started, finished in jobs:
        waited = [made for start, made in starts if created < start < started]
        later = sum(1 for made in waited if made > created) / len(waited) if waited else 0.0
        missed = later * (started - created) + (finished - started) - mean_run
        out[job_id] = abs(missed) / max(finished - created, 1)
    return out


def _quantile(ordered: list[float], q: float) -> float | str | None:
    """The ``q`` quantile of sorted ``ordered`` (nearest rank), rounded; None when empty."""
    if not ordered:
        return None
    value = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
    return round(value, 3) if math.isfinite(value) else "inf"


def check_eta(facts: Facts) -> Check:
    """6: per tier, the median relative error of the ETA at creation at most 15 %, or,
    where even the best ETA blind to the future misses by more (the floor), no worse."""
    figures = eta_errors(facts)
    passed = all(
        isinstance(f["median"], float) and f["median"] <= max(ETA_TARGET, _number(f["floor"]))
        for f in figures.values()
    )
    detail = "; ".join(
        f"{tier} median {f['median']}, p90 {f['p90']} over {f['jobs']} jobs "
        f"(floor {f['floor']})" + (f" ({f['no_eta']} without an ETA)" if f["no_eta"] else "")
        for tier, f in figures.items()
    )
    name = (f"ETA at creation within {ETA_TARGET:.0%} of the real time, or no worse than "
            "the floor where that is higher (median, per tier)")  # fmt: skip
    return Check(6, name, passed, f"|ETA - actual| / actual: {detail}")


def _number(value: object) -> float:
    return float(value) if isinstance(value, float | int) else 0.0


def evaluate(facts: Facts) -> list[Check]:
    """All six checks, in order."""
    return [check(facts) for check in (check_failures, check_latency, check_upstream,
                                       check_images, check_drain, check_eta)]  # fmt: skip
