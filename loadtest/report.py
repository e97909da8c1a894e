"""The run's own report: one self-contained HTML page with SVG charts, and the JSON summary.

Charts: the queue's depth per state (sampled every second), upstream submissions per second
against the rate limit (the stub's ``recent``), and API latency and load over time (Locust's
``_stats_history.csv``, whose percentiles cover Locust's last ~10 s); in the flood scenario
also each single-job user's wait against its fair-share bound (``loadtest.fairness``).
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any

from loadtest.campaign import GET_GENERATION, GET_IMAGE, POST_CHARACTER
from loadtest.charts import Rule, Series, chart
from loadtest.checks import (
    P95_MS,
    P99_MS,
    Check,
    Facts,
    api_histograms,
    drain_s,
    eta_errors,
    percentile,
    physical_limit_s,
)
from loadtest.fairness import capacity_per_s, figures, shares_of
from loadtest.locust_csv import HistoryRow
from loadtest.sampler import QueueSample
from loadtest.webhooks import figures as webhook_figures

STATE_COLORS = {"waiting": "#1f77b4", "active": "#ff7f0e", "delayed": "#9467bd",
                "completed": "#2ca02c", "failed": "#d62728"}  # fmt: skip
TIERS = ("premium", "regular", "bulk")


def start_time(facts: Facts, queue: list[QueueSample]) -> float:
    """Time zero of every chart: the first POST, else the first queue sample."""
    posted = [o.posted_at for o in facts.results.outcomes if o.posted_at] if facts.results else []
    return min(posted) if posted else (queue[0].t if queue else 0.0)


def wait_by_tier(facts: Facts) -> dict[str, float | None]:
    """Median seconds from enqueue to start, per tier: the priorities at work."""
    tiers = {o.job_id: o.tier for o in facts.results.outcomes} if facts.results else {}
    waits: dict[str, list[float]] = {t: [] for t in TIERS}
    for job in facts.jobs:
        if job.started_at is not None and job.job_id in tiers:
            waits[tiers[job.job_id]].append((job.started_at - job.created_at) / 1000)
    return {t: round(statistics.median(w), 2) if w else None for t, w in waits.items()}


def summary(facts: Facts, checks: list[Check], report_dir: Path) -> dict[str, Any]:
    """The one JSON line the run prints."""
    o = facts.options
    api = api_histograms(facts)
    images = [h for h in facts.results.histograms if h.name == GET_IMAGE] if facts.results else []
    total = next((r for r in facts.stats if r.name == "Aggregated"), None)
    drain, limit = drain_s(facts), physical_limit_s(o)
    return {
        "loadtest": "imagequeue", "queue": facts.queue, "users": o.users,
        "spawn_rate": o.spawn_rate,
        "workers": o.workers, "slots": o.slots, "rate_limit": o.rate_limit,
        "latency_scale": o.latency_scale, "mean_latency_s": round(o.mean_latency_s, 3),
        "api_processes": o.api_processes,
        "requests": total.requests if total else 0, "failures": total.failures if total else 0,
        "api_requests": sum(h.requests for h in api),
        "api_p50_ms": percentile(api, 0.5), "api_p95_ms": percentile(api, 0.95),
        "api_p99_ms": percentile(api, 0.99), "image_p95_ms": percentile(images, 0.95),
        "stub_peak_per_second": facts.stub_peak_per_second,
        "stub_submissions": facts.stub_submissions,
        "characters": len(facts.images),
        "one_image_each": bool(facts.images) and all(n == 1 for n in facts.images.values()),
        "drain_s": round(drain, 2) if drain is not None else None,
        "physical_limit_s": round(limit, 2),
        "drain_vs_physical_limit": round(drain / limit, 3) if drain is not None else None,
        "wait_s_p50": wait_by_tier(facts),
        "eta_relative_error": eta_errors(facts),
        **figures(facts),
        **webhook_figures(facts),
        "checks_passed": f"{sum(c.passed for c in checks)}/{len(checks)}",
        "report": str(report_dir / "report.html"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}, Redis {facts.redis_version}",
    }  # fmt: skip


def queue_chart(queue: list[QueueSample], t0: float) -> str:
    """Jobs per state over time."""
    series = [
        Series(state, [(s.t - t0, float(getattr(s, state))) for s in queue], color)
        for state, color in STATE_COLORS.items()
    ]
    return chart(series, x_label="seconds since the first POST", y_label="jobs")


def busiest_windows(arrivals: list[float], t0: float) -> dict[int, int]:
    """Per second of the run: the most arrivals in any 1 s window that starts in it."""
    busiest: dict[int, int] = {}
    end = 0
    for i, start in enumerate(arrivals):  # sorted; two pointers, O(n)
        while end < len(arrivals) and arrivals[end] < start + 1.0:
            end += 1
        second = int(start - t0)
        busiest[second] = max(busiest.get(second, 0), end - i)
    return busiest


def upstream_chart(arrivals: list[float], t0: float, limit: int) -> str:
    """Submissions the stub received per whole second, the busiest sliding second, the limit."""
    arrivals = [t for t in arrivals if t >= t0]
    per_second = Counter(int(t - t0) for t in arrivals)
    fixed = sorted((float(second), float(n)) for second, n in per_second.items())
    sliding = sorted((s + 0.5, float(n)) for s, n in busiest_windows(arrivals, t0).items())
    series = [
        Series("submissions in each whole second", fixed, "#9ecae1", "bar"),
        Series("busiest sliding 1 s window starting in that second", sliding, "#08519c"),
    ]
    return chart(series, x_label="seconds since the first POST", y_label="submissions",
                 rules=[Rule(f"rate limit {limit}/s", limit, "#d62728")])  # fmt: skip


def latency_chart(history: list[HistoryRow], t0: float) -> str:
    """API response-time percentiles over Locust's sliding ~10 s, per request name."""
    lines = [(GET_GENERATION, "p50", "#2ca02c"), (GET_GENERATION, "p95", "#1f77b4"),
             (GET_GENERATION, "p99", "#9467bd"), (POST_CHARACTER, "p95", "#ff7f0e")]  # fmt: skip
    series = []
    for name, which, color in lines:
        # A name with no request in Locust's window reports 0 ms: a gap, not a point.
        points = [(r.t - t0, v) for r in history if r.name == name and r.rps > 0
                  if (v := getattr(r, f"{which}_ms")) is not None]  # fmt: skip
        series.append(Series(f"{name} {which}", points, color))
    rules = [Rule(f"p95 target {P95_MS} ms", P95_MS, "#d62728"),
             Rule(f"p99 target {P99_MS} ms", P99_MS, "#8c564b")]  # fmt: skip
    return chart(series, x_label="seconds since the first POST", y_label="ms", rules=rules)


def load_chart(history: list[HistoryRow], t0: float) -> str:
    """Requests per second and live users over time."""
    total = [r for r in history if r.name == "Aggregated"]
    series = [Series("requests/s", [(r.t - t0, r.rps) for r in total], "#1f77b4"),
              Series("users", [(r.t - t0, float(r.users)) for r in total], "#7f7f7f")]  # fmt: skip
    return chart(series, x_label="seconds since the first POST", y_label="requests/s, users")


def fair_share_chart(facts: Facts, t0: float) -> str:
    """Each single-job user's wait, its fair share ``N / C`` and its bound, by arrival."""
    capacity = capacity_per_s(facts.options)
    # Users who arrived together (Locust starts a second's users at once), shortest wait first.
    shares = sorted((s for s in shares_of(facts) if math.isfinite(s.wait_s)),
                    key=lambda s: (s.created_ms, s.wait_s))  # fmt: skip
    at = [(s.created_ms / 1000 - t0, s) for s in shares]
    series = [Series("wait", [(x, s.wait_s) for x, s in at], "#1f77b4"),
              Series("fair share N / C", [(x, s.users_waiting / capacity) for x, s in at],
                     "#2ca02c"),
              Series("bound: fair share + one job time", [(x, s.bound_s) for x, s in at],
                     "#d62728")]  # fmt: skip
    return chart(series, x_label="seconds since the first POST (the user's arrival)",
                 y_label="seconds")  # fmt: skip


def write_report(
    path: Path, facts: Facts, checks: list[Check], line: dict[str, Any], *,
    queue: list[QueueSample], arrivals: list[float], history: list[HistoryRow],
) -> None:  # fmt: skip
    """Write ``report.html``: checks, summary, the four charts."""
    t0 = start_time(facts, queue)
    rows = "".join(
        f'<tr class="{"pass" if c.passed else "fail"}"><td>{"PASS" if c.passed else "FAIL"}</td>'
        f"<td>{c.number}</td><td>{escape(c.name)}</td><td>{escape(c.detail)}</td></tr>"
        for c in checks
    )
    figures = "".join(f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>"
                      for k, v in line.items())  # fmt: skip
    sections = [
        ("Queue depth per state (GET /api/v1/queue/stats every second)", queue_chart(queue, t0)),
        ("Upstream submissions per second (the stub's own log) against the rate limit",
         upstream_chart(arrivals, t0, facts.options.rate_limit)),
        ("API response time (Locust, percentiles over its last ~10 s)",
         latency_chart(history, t0)),
        ("Load: requests per second and live users", load_chart(history, t0)),
    ]  # fmt: skip
    if facts.options.flood:
        sections.append(("Single-job users: wait against the fair-share bound (check 7), by "
                         "arrival", fair_share_chart(facts, t0)))  # fmt: skip
    charts = "".join(f"<h2>{escape(title)}</h2>{svg}" for title, svg in sections)
    path.write_text(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imagequeue load test</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:960px}}
table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:13px}}tr.pass td:first-child{{color:#2ca02c;font-weight:bold}}
tr.fail td:first-child{{color:#d62728;font-weight:bold}}h2{{font-size:15px;margin-top:1.6em}}
</style></head><body><h1>imagequeue load test</h1>
<table>{rows}</table><table>{figures}</table>{charts}
<p>Locust's own report: <a href="locust.html">locust.html</a>; its CSV files: locust_*.csv.</p>
</body></html>
""")
