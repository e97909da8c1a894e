"""What the dashboard pages show, gathered from the engine's Redis state (no copy of jobs)."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
from jinja2 import Environment, PackageLoader, select_autoescape

from imagequeue_api.dashboard.format import FILTERS
from imagequeue_api.views import result_url
from imagequeue_common.contracts import JobState
from imagequeue_common.errors import ImageQueueError
from imagequeue_common.prompts import build_prompt
from imagequeue_common.queue.admin import QueueAdmin
from imagequeue_common.queue.jobs import Job
from imagequeue_common.store import CharacterStore

STATES = [s.value for s in JobState]


def templates() -> Environment:
    """The dashboard's Jinja environment (autoescaped)."""
    env = Environment(
        loader=PackageLoader("imagequeue_api.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


async def overview(admin: QueueAdmin, render_html: Any, *, viewer: bool) -> dict[str, Any]:
    """Counts, throughput by minute, rate-limit use, the busiest users (their ids for
    admins only), workers, Redis health."""
    ledger = admin.ledger
    stats = await ledger.stats()
    minutes = await admin.throughput_by_minute(60)
    rate = await admin.rate_usage()
    workers = await ledger.live_workers()
    redis = await admin.redis_health()
    users = await ledger.busiest_users()
    recent = await ledger.throughput()
    counts = {s: getattr(stats, s) for s in STATES}
    minutes_builtins = msgspec.to_builtins(minutes)
    return {
        "counts": counts,
        "paused": stats.paused,
        "rate": msgspec.to_builtins(rate),
        "rate_pct": round(100 * rate.used / rate.max) if rate.max else 0,
        "jobs_per_minute": round(recent.per_minute, 1),
        "minutes": minutes_builtins,
        "minutes_json": msgspec.json.encode(minutes_builtins).decode(),
        "workers": workers,
        "workers_html": render_html("_workers.html", workers=workers),
        "redis": redis,
        "redis_html": render_html("_redis.html", redis=redis),
        "users_waiting": stats.users_waiting,
        "users_active": stats.users_active,
        "users": users,
        "users_html": render_html("_users.html", users=users, viewer=viewer),
    }


def job_payload(job: Job) -> dict[str, Any]:
    """The generate_image arguments inside a job's taskiq message."""
    with contextlib.suppress(msgspec.DecodeError, KeyError, IndexError, TypeError):
        message = msgspec.json.decode(job.payload)
        args = message["args"][0]
        if isinstance(args, dict):
            return args
    return {}


async def job_prompt(store: CharacterStore, payload: dict[str, Any]) -> str:
    """The prompt a run of this job sends (built the way the worker builds it)."""
    try:
        character = await store.get_character(str(payload.get("character_id", "")))
        pose = await store.get_pose(str(payload.get("pose_id", "")))
    except ImageQueueError:
        return ""
    return build_prompt(character, pose)


def operator_error(job: Job) -> str:
    """The last error as operators see it: what users see, then where it was raised and,
    for a dead letter, the traceback."""
    return "\n".join(part for part in (job.error or "", job.error_detail) if part)


def job_json(job: Job) -> dict[str, Any]:
    """A job for the live job page."""
    return {
        "id": job.id,
        "state": job.state.value,
        "progress": job.progress,
        "progress_msg": job.progress_msg,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "error": operator_error(job),
        "result_url": result_url(job),
    }
