"""Real worker processes for tests: started, waited for, stopped or SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import Redis

from imagequeue_common.queue.keys import QueueKeys
from imagequeue_common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def uv_command() -> list[str]:
    """How to run ``uv`` here: the one on PATH, else the module (``.ci/run`` pip-installs it)."""
    found = shutil.which("uv")
    return [found] if found else [sys.executable, "-m", "uv"]


async def server_ms(redis: Redis) -> int:
    """Redis's clock (``TIME``) in ms: the clock the engine's scripts use."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, poll_s: float = 0.02
) -> None:
    """Poll ``check`` until it is true; fail the test after ``timeout_s`` naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(poll_s)


class WorkerProcess:
    """``imagequeue-worker run`` with the test tasks, in its own process group."""

    def __init__(
        self, env: dict[str, str], processes: int = 1, log_dir: Path | None = None,
        *, argv: list[str] | None = None,
    ) -> None:  # fmt: skip
        """``argv``: another command than ``imagequeue-worker run`` with the test tasks
        (``-m`` module and arguments for this python, e.g. taskiq's own worker)."""
        self.env = env
        self.processes = processes
        self.log_dir = log_dir
        self.argv = argv or ["-m", "imagequeue_worker", "run", "--processes", str(processes),
                             "--broker", "tests.support.tasks:create_broker"]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        """Spawn the worker; returns self."""
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        log_path = os.devnull
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = str(self.log_dir / f"worker-{time.monotonic_ns()}.log")
        with open(log_path, "wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, *self.argv], env=env, cwd=ROOT, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group: the host died, nothing got to clean up."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 20) -> int | None:
        """Graceful stop (SIGINT), then SIGKILL if it hangs; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode


def worker_env(settings: Settings, **overrides: object) -> dict[str, str]:
    """Environment for a worker process running ``settings``."""
    env = {
        "REDIS_URL": settings.redis_url or "",
        "QUEUE_NAME": settings.queue_name,
        "RATE_LIMIT_MAX": str(settings.rate_limit_max),
        "RATE_LIMIT_DURATION_MS": str(settings.rate_limit_duration_ms),
        "WORKER_CONCURRENCY": str(settings.worker_concurrency),
        "JOB_RETRIES": str(settings.job_retries),
        "BACKOFF_TYPE": settings.backoff_type,
        "BACKOFF_DELAY_MS": str(settings.backoff_delay_ms),
        "LEASE_MS": str(settings.lease_ms),
        "STALL_LIMIT": str(settings.stall_limit),
        "REDIS_RETRY_MS": str(settings.redis_retry_ms),
        "KEEP_COMPLETED_MS": str(settings.keep_completed_ms),
        "KEEP_FAILED_MS": str(settings.keep_failed_ms),
        # Without an upstream a worker runs the engine's test tasks only (no image pipeline).
        "AI_GENERATION_ENABLED": str(bool(settings.ai_generation_api_url)).lower(),
        "AI_GENERATION_API_URL": settings.ai_generation_api_url or "",
        "AI_GENERATION_BACKEND": settings.ai_generation_backend,
        "AI_TOTAL_TIMEOUT_S": str(settings.ai_total_timeout_s),
        "AI_READ_TIMEOUT_S": str(settings.ai_read_timeout_s),
        "AI_POLL_INTERVAL_MS": str(settings.ai_poll_interval_ms),
        "DATABASE_URL": settings.database_url,
        "ASSETS_DIR": settings.assets_dir,
        "ASSETS_URL_PREFIX": settings.assets_url_prefix,
        "AI_IMAGE_WIDTH": str(settings.ai_image_width),
        "AI_IMAGE_HEIGHT": str(settings.ai_image_height),
        "RATE_LIMIT_GUARD_MS": str(settings.rate_limit_guard_ms),
        "LOG_LEVEL": settings.log_level,
    }
    env.update({k.upper(): str(v) for k, v in overrides.items()})
    return env


def start_workers(
    started: list[WorkerProcess],
    settings: Settings,
    count: int = 1,
    log_dir: Path | None = None,
    **overrides: object,
) -> list[WorkerProcess]:
    """Start ``count`` worker processes (each its own process group) for ``settings``.

    Their output goes to ``log_dir``, else to ``$IQ_TEST_LOGS`` when set, else nowhere.
    """
    if log_dir is None and os.environ.get("IQ_TEST_LOGS"):
        log_dir = Path(os.environ["IQ_TEST_LOGS"])
    new = [
        WorkerProcess(worker_env(settings, **overrides), log_dir=log_dir).start()
        for _ in range(count)
    ]
    started.extend(new)
    return new


async def wait_workers_ready(
    client: Redis, settings: Settings, count: int, timeout_s: float = 30
) -> None:
    """Wait until ``count`` worker processes have sent their first heartbeat."""
    key = QueueKeys.for_queue(settings.queue_name).workers

    async def ready() -> bool:
        return int(await client.zcard(key)) >= count

    await wait_until(ready, timeout_s, f"{count} workers to start", poll_s=0.05)


async def stream_events(client: Redis, key: str) -> list[tuple[str, dict[str, str]]]:
    """All entries of an event stream as ``(id, fields)``."""
    entries = await client.xrange(key)
    return [(str(eid), dict(fields)) for eid, fields in entries]  # type: ignore[union-attr, arg-type]


async def str_hash(client: Redis, key: str) -> dict[str, str]:
    """A hash read through a ``decode_responses`` client."""
    return dict(await client.hgetall(key))  # type: ignore[arg-type]
