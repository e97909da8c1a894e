"""The load test's webhooks (``--webhooks``): what the receiver heard, and check 8 — every
completed character's ``completed`` arrived, once by ``webhook-id``, verified."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from loadtest.campaign import Heard, WebhookFacts
from loadtest.checks import Check, Facts

NAME = "webhooks: every completed image's event arrives once, signed"
WAIT_S = 60.0
"""How long the gathering waits, after Locust's end, for the last deliveries."""


async def wait_for_receiver(url: str, completed: int, timeout_s: float = WAIT_S) -> None:
    """Until the receiver has heard ``completed`` distinct ``completed`` deliveries."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            stats = (await http.get(f"{url}/stats")).json()
            if stats["completed_unique"] >= completed:
                return
            await asyncio.sleep(0.2)


async def with_webhooks(facts: Facts, receiver_url: str, heard_path: Path) -> Facts:
    """``facts`` with what the receiver heard, once it has heard every completed job (or
    :data:`WAIT_S` has passed)."""
    completed = [j.job_id for j in facts.jobs if j.state == "completed"]
    await wait_for_receiver(receiver_url, len(completed))
    hooks = WebhookFacts(completed_jobs=completed, heard=read_heard(heard_path))
    return msgspec.structs.replace(facts, webhooks=hooks)


def read_heard(path: Path) -> list[Heard]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [msgspec.convert(json.loads(line), Heard) for line in lines if line.strip()]


def _percentile(values: list[float], fraction: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def figures(facts: Facts) -> dict[str, Any]:
    """The summary line's webhook figures (none without ``--webhooks``)."""
    hooks = facts.webhooks
    if hooks is None:
        return {}
    done = [h for h in hooks.heard if h.event == "completed"]
    first: dict[str, Heard] = {}
    for h in sorted(done, key=lambda h: h.at):
        first.setdefault(h.msg_id, h)
    latencies = [(h.at - h.finished_at) * 1000 for h in first.values() if h.finished_at]
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    return {"webhooks": {
        "completed_jobs": len(hooks.completed_jobs), "requests": len(hooks.heard),
        "completed_unique": len(first), "jobs_heard": len({h.job for h in first.values()}),
        "repeats": len(done) - len(first), "unverified": sum(not h.verified for h in hooks.heard),
        "latency_ms_p50": round(p50, 1) if p50 is not None else None,
        "latency_ms_p99": round(p99, 1) if p99 is not None else None,
    }}  # fmt: skip


def check_webhooks(facts: Facts) -> Check:
    """Check 8: each completed job heard as completed under exactly one ``webhook-id``, no
    other job's, every request verified."""
    hooks = facts.webhooks
    if hooks is None:
        return Check(8, NAME, False, "no webhook facts were gathered")
    ids_per_job: dict[str, set[str]] = {}
    for h in hooks.heard:
        if h.event == "completed" and h.job:
            ids_per_job.setdefault(h.job, set()).add(h.msg_id)
    expected = set(hooks.completed_jobs)
    missing = expected - set(ids_per_job)
    extra = set(ids_per_job) - expected
    split = [job for job, ids in ids_per_job.items() if len(ids) != 1]
    unverified = sum(not h.verified for h in hooks.heard)
    passed = bool(expected) and not (missing or extra or split or unverified)
    f = figures(facts)["webhooks"]
    detail = (f"{len(expected)} completed jobs; heard {len(ids_per_job)} under "
              f"{f['completed_unique']} webhook-ids ({f['repeats']} repeats), {len(missing)} "
              f"missing, {len(extra)} unknown, {len(split)} under two ids, {unverified} "
              f"unverified; latency from finish p50 {f['latency_ms_p50']} ms, p99 "
              f"{f['latency_ms_p99']} ms")  # fmt: skip
    return Check(8, NAME, passed, detail)
