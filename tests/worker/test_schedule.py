"""The cleanup runs on a cron label every 6 hours, and by hand from the command line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

from redis.asyncio import Redis
from taskiq.schedule_sources import LabelScheduleSource

from imagequeue_common.contracts import CLEAN_TASK
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.settings import Settings, replace
from imagequeue_worker.app import build_broker
from tests.support.procs import ROOT, worker_env


async def cron_of_clean(settings: Settings) -> str | None:
    source = LabelScheduleSource(build_broker(settings))
    await source.startup()
    [clean] = [s for s in await source.get_schedules() if s.task_name == CLEAN_TASK]
    return clean.cron


async def test_clean_task_is_scheduled_by_its_cron_label(settings: Settings) -> None:
    assert await cron_of_clean(settings) == "0 */6 * * *"
    assert await cron_of_clean(replace(settings, clean_cron="*/5 * * * *")) == "*/5 * * * *"


async def test_clean_by_hand_from_the_command_line(redis: Redis, settings: Settings) -> None:
    ledger = JobLedger(redis, settings)
    for i in range(4):
        await ledger.enqueue(f"j{i}", "t", "{}")
    for job in (await ledger.claim("w", 4)).jobs:
        await ledger.finish([FinishOp(job.job_id, job.token, "completed", "1")])
    env = {**os.environ, **worker_env(settings, keep_completed_ms=0)}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "imagequeue_worker", "clean"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert "removed 4 completed, 0 failed, 0 cancelled jobs" in done.stdout


def test_a_bad_setting_stops_the_worker_with_one_line() -> None:
    env = {**os.environ, "RATE_LIMIT_MAX": "lots"}
    done = subprocess.run(
        [sys.executable, "-m", "imagequeue_worker", "run"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "imagequeue-worker: bad setting: RATE_LIMIT_MAX must be a whole number, got 'lots'"
    )
