"""``/healthz`` (the process is up), ``/readyz`` (Redis and the database answer), ``/metrics``."""

from __future__ import annotations

import hmac
from typing import Any

from litestar import Request, Response, get
from redis.exceptions import RedisError

from imagequeue_api.openapi_doc import errors
from imagequeue_api.problems import Problem
from imagequeue_api.resources import Res, Resources
from imagequeue_common.errors import StoreUnavailableError

# Litestar adds "; charset=utf-8" to every text/ type itself.
PROMETHEUS = "text/plain; version=0.0.4"


@get("/healthz", tags=["health"])
async def healthz() -> dict[str, str]:
    """The process is up (no dependency is asked)."""
    return {"status": "ok"}


@get("/readyz", tags=["health"], responses={503: errors(503)[503]})
async def readyz(resources: Res) -> dict[str, str]:
    """Redis and the database answer; 503 with Retry-After otherwise."""
    down = []
    try:
        await resources.broker.ledger.client.ping()
    except (RedisError, OSError):
        down.append("redis")
    try:
        await resources.store.ping()
    except StoreUnavailableError:
        down.append("database")
    if down:
        raise Problem(503, f"Not ready: {', '.join(down)} not answering.",
                      headers={"Retry-After": "5"})  # fmt: skip
    return {"status": "ready"}


@get("/metrics", tags=["health"], include_in_schema=False)
async def metrics(request: Request[Any, Any, Any], resources: Res) -> Response[str]:
    """Prometheus text: queue depth per state, job counters and run time, upstream outcomes,
    rate-limit waits, live workers. Needs ``Authorization: Bearer <METRICS_TOKEN>``."""
    token = resources.settings.metrics_token
    presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not token:
        raise Problem(404, "Metrics are off (METRICS_TOKEN is not set).")
    if not hmac.compare_digest(presented.encode(), token.encode()):
        raise Problem(401, "Metrics need Authorization: Bearer <METRICS_TOKEN>.",
                      headers={"WWW-Authenticate": 'Bearer realm="metrics"'})  # fmt: skip
    return Response(await render_metrics(resources), media_type=PROMETHEUS)


async def webhook_metrics(resources: Resources) -> list[str]:
    """Deliveries in each state of their queue, and attempts by outcome."""
    stats, outcomes = await resources.deliveries.stats(), await resources.webhooks.outcomes()
    lines = ["# HELP imagequeue_webhook_deliveries Webhook deliveries in each state now "
             "(failed: dead-lettered).", "# TYPE imagequeue_webhook_deliveries gauge"]  # fmt: skip
    for state in ("waiting", "active", "delayed", "completed", "failed"):
        lines.append(f'imagequeue_webhook_deliveries{{state="{state}"}} {getattr(stats, state)}')
    lines += ["# HELP imagequeue_webhook_attempts_total Delivery attempts by outcome "
              "(dead: deliveries given up).",
              "# TYPE imagequeue_webhook_attempts_total counter"]  # fmt: skip
    for outcome in ("delivered", "retry", "gone", "refused", "disabled", "dead"):
        lines.append(f'imagequeue_webhook_attempts_total{{outcome="{outcome}"}} '
                     f"{outcomes.get(outcome, 0)}")  # fmt: skip
    return lines


async def render_metrics(resources: Resources) -> str:
    """The exposition text (one Redis read per family)."""
    ledger = resources.broker.ledger
    stats, counters = await ledger.stats(), await ledger.metrics()
    upstream, workers = await ledger.upstream_counts(), await ledger.live_workers()
    lines = ["# HELP imagequeue_jobs Jobs in each state now.", "# TYPE imagequeue_jobs gauge"]
    for state in ("waiting", "active", "delayed", "completed", "failed", "cancelled", "expired"):
        lines.append(f'imagequeue_jobs{{state="{state}"}} {getattr(stats, state)}')
    lines += ["# HELP imagequeue_users Users with waiting or running jobs now.",
              "# TYPE imagequeue_users gauge",
              f'imagequeue_users{{with_jobs="waiting"}} {stats.users_waiting}',
              f'imagequeue_users{{with_jobs="active"}} {stats.users_active}']  # fmt: skip
    lines += ["# HELP imagequeue_job_events_total Job transitions since the queue began.",
              "# TYPE imagequeue_job_events_total counter"]  # fmt: skip
    for event in ("claimed", "completed", "failed", "retried", "stalled", "cancelled",
                  "expired"):  # fmt: skip
        lines.append(f'imagequeue_job_events_total{{event="{event}"}} {getattr(counters, event)}')
    lines += ["# HELP imagequeue_admission_refusals_total New jobs refused with 429 by "
              "MAX_QUEUE_LENGTH or MAX_QUEUE_WAIT_S.",
              "# TYPE imagequeue_admission_refusals_total counter",
              f'imagequeue_admission_refusals_total{{reason="queue_length"}} '
              f"{counters.refused_length}",
              f'imagequeue_admission_refusals_total{{reason="predicted_wait"}} '
              f"{counters.refused_wait}"]  # fmt: skip
    lines += [
        "# HELP imagequeue_job_run_seconds Run time of completed jobs.",
        "# TYPE imagequeue_job_run_seconds summary",
        f"imagequeue_job_run_seconds_sum {counters.run_ms_completed / 1000}",
        f"imagequeue_job_run_seconds_count {counters.completed}",
        "# HELP imagequeue_rate_limit_waits_total Claims and AI requests held by the limit.",
        "# TYPE imagequeue_rate_limit_waits_total counter",
        f'imagequeue_rate_limit_waits_total{{at="claim"}} {counters.rate_limited}',
        f'imagequeue_rate_limit_waits_total{{at="request"}} {counters.upstream_waits}',
        "# HELP imagequeue_upstream_requests_total AI requests by outcome.",
        "# TYPE imagequeue_upstream_requests_total counter",
    ]
    for outcome, count in sorted(upstream.items()):
        lines.append(f'imagequeue_upstream_requests_total{{outcome="{outcome}"}} {count}')
    lines += await webhook_metrics(resources)
    lines += ["# HELP imagequeue_workers Live worker processes.", "# TYPE imagequeue_workers gauge",
              f"imagequeue_workers {len(workers)}"]  # fmt: skip
    return "\n".join(lines) + "\n"
