"""The system under test, started and stopped by the load test.

A private redis-server (unless ``REDIS_URL`` is given), the stub AI server, the API, the
worker processes and optionally the scheduler — each a child in its own process group (so
a Ctrl-C reaches only the load test, which then stops them in order), each logging to a
file of the report's ``logs/``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TypeVar

import httpx
from redis.asyncio import Redis

from imagequeue_common.embedded_redis import EmbeddedRedis, free_port
from imagequeue_common.queue.keys import QueueKeys
from imagequeue_common.redis_conn import command_client
from imagequeue_common.store import open_store
from loadtest.options import STUB_LATENCY_MAX_S, STUB_LATENCY_MIN_S, Options

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[1]


class StackError(RuntimeError):
    """A part of the stack did not start; the message names it and its log."""


def say(text: str) -> None:
    """One progress line for the person at the terminal."""
    print(f"[loadtest] {text}", flush=True)


STUB_NICE = -10


class Service:
    """One child process in its own process group, its output in ``log_path``."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log_path: Path,
        stop_signal: signal.Signals = signal.SIGINT, *, nice: int = 0,
    ) -> None:  # fmt: skip
        self.name = name
        self.stop_signal = stop_signal
        """What :meth:`stop` sends first (SIGINT: workers finish their running jobs)."""
        self.args = ["nice", "-n", str(nice), *args] if nice else args
        """The command line; run under ``nice`` when ``nice`` is set."""
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        """Spawn the process; returns self."""
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
                self.args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return self

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the process to exit; True when it has."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, timeout_s: float = 30) -> None:
        """Send :attr:`stop_signal` to the process group, SIGKILL after ``timeout_s``;
        idempotent."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, self.stop_signal)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            say(f"{self.name} did not stop in {timeout_s:g} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def wait_for(
    check: Callable[[], bool], what: str, services: list[Service], timeout_s: float
) -> None:
    """Poll ``check`` until true; ``StackError`` when a service died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while not check():
        dead = [s for s in services if not s.alive()]
        if dead:
            raise StackError(
                f"{dead[0].name} exited while waiting for {what}; see {dead[0].log_path}"
            )
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)  # poll interval


def answers(url: str) -> bool:
    """True when ``GET url`` answers 200."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


class Stack:
    """The whole service for one run; a context manager that always stops what it started."""

    def __init__(
        self, options: Options, work_dir: Path, log_dir: Path, base_env: Mapping[str, str]
    ) -> None:
        self.options = options
        self.base_env = dict(base_env)
        """The environment the children start from (PATH and the like), before our settings."""
        self.work_dir = work_dir
        self.log_dir = log_dir
        # A queue of its own: on a shared Redis the run touches no one else's keys.
        self.queue = f"lt{uuid.uuid4().hex[:10]}"
        self.redis_url = options.redis_url
        self.database_url = f"sqlite:///{work_dir / 'imagequeue.db'}"
        self.assets_dir = work_dir / "assets"
        self.api_url = f"http://127.0.0.1:{free_port()}"
        self.stub_url = f"http://127.0.0.1:{free_port()}"
        self.receiver_url = f"http://127.0.0.1:{free_port()}"
        self.secrets_path = work_dir / "webhook-secrets.json"
        """``--webhooks``: user id → webhook secret, for the receiver (written with the keys)."""
        self.heard_path = log_dir / "webhooks.jsonl"
        self.stub: Service | None = None
        self.api: Service | None = None
        self.workers: list[Service] = []
        self.scheduler: Service | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Stack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop everything, newest first (workers finish their running jobs); idempotent."""
        self._stack.close()

    def env(self) -> dict[str, str]:
        """The environment of the API, worker and scheduler processes."""
        o = self.options
        return {
            **self.base_env, "PYTHONPATH": str(ROOT), "REDIS_URL": self.redis_url,
            "QUEUE_NAME": self.queue, "DATA_DIR": str(self.work_dir),
            "DATABASE_URL": self.database_url, "ASSETS_DIR": str(self.assets_dir),
            "ASSETS_URL_PREFIX": "/assets", "RATE_LIMIT_MAX": str(o.rate_limit),
            "RATE_LIMIT_DURATION_MS": "1000", "WORKER_CONCURRENCY": str(o.concurrency),
            "API_PORT": self.api_url.rsplit(":", 1)[1], "API_HOST": "127.0.0.1",
            "API_PROCESSES": str(o.api_processes), "AI_GENERATION_ENABLED": "true",
            "AI_GENERATION_API_URL": f"{self.stub_url}/generate",
            "AI_GENERATION_BACKEND": "generic", "LOG_FORMAT": "text",
            # The ETA's job time before the first completion: the stub's configured mean,
            # as an operator sets it for their GPU.
            "EXPECTED_JOB_S": f"{o.mean_latency_s:g}",
            # The receiver is on this machine, over plain http.
            **({"WEBHOOK_ALLOW_HTTP": "true", "WEBHOOK_PRIVATE_HOSTS": "127.0.0.1"}
               if o.webhooks else {}),
        }  # fmt: skip

    def _service(
        self, name: str, args: list[str], env: dict[str, str],
        stop_signal: signal.Signals = signal.SIGINT, *, nice: int = 0,
    ) -> Service:  # fmt: skip
        log_path = self.log_dir / f"{name}.log"
        service = Service(name, [sys.executable, *args], env, log_path, stop_signal, nice=nice)
        self._stack.callback(service.stop)
        return service.start()

    def _start(self) -> None:
        if not self.redis_url:
            server = EmbeddedRedis(self.work_dir / "redis")
            self.redis_url = server.start()
            self._stack.callback(server.stop)
            say(f"private redis-server on port {server.port}")
        else:
            self._stack.callback(self._delete_queue_keys)
            say(f"Redis at {self.redis_url.split('@')[-1]}, queue {self.queue}")
        self._start_stub()
        # Migrate and seed once, before several processes open the same SQLite file.
        asyncio.run(_migrate(self.database_url))
        env = self.env()
        self.api = self._service("api", ["-m", "imagequeue_api", "serve"], env)
        wait_for(lambda: answers(f"{self.api_url}/readyz"), "the API", [self.api], 60)
        self.workers = [
            self._service(f"worker-{i}", ["-m", "imagequeue_worker", "run"], env)
            for i in range(self.options.workers)
        ]
        wait_for(self._workers_live, f"{self.options.workers} workers", self.workers, 60)
        if self.options.webhooks:
            self._start_webhooks(env)
        if self.options.scheduler:
            # taskiq's scheduler sits out a SIGINT; it holds no work, so SIGTERM is safe.
            self.scheduler = self._service(
                "scheduler", ["-m", "imagequeue_worker", "scheduler"], env, signal.SIGTERM
            )
        say(f"API on {self.api_url} ({self.options.api_processes} process(es)), "
            f"{self.options.workers} workers x {self.options.concurrency} slots, "
            f"stub on {self.stub_url}")  # fmt: skip

    def _start_webhooks(self, env: dict[str, str]) -> None:
        """The receiver (a process of its own, standing for the clients' servers) and one
        webhook worker process."""
        port = self.receiver_url.rsplit(":", 1)[1]
        receiver = self._service("receiver", ["-m", "loadtest.receiver", "--port", port,
                                              "--secrets", str(self.secrets_path),
                                              "--out", str(self.heard_path)],
                                 {**self.base_env, "PYTHONPATH": str(ROOT)})  # fmt: skip
        wait_for(lambda: answers(f"{self.receiver_url}/stats"), "the receiver", [receiver], 30)
        hooks = self._service("webhooks", ["-m", "imagequeue_worker", "webhooks"], env)
        workers = QueueKeys.for_queue(f"{self.queue}-webhooks").workers
        wait_for(lambda: on_redis(self.redis_url, lambda c: c.zcard(workers)) >= 1,
                 "the webhook worker", [hooks], 60)  # fmt: skip
        say(f"webhook receiver on {self.receiver_url}, one webhook worker")

    def _start_stub(self) -> None:
        scale = self.options.latency_scale
        env = {**self.base_env, "PYTHONPATH": str(ROOT), "STUB_TIME_SCALE": f"{scale:g}",
               "STUB_LATENCY_MIN_S": f"{STUB_LATENCY_MIN_S:g}",
               "STUB_LATENCY_MAX_S": f"{STUB_LATENCY_MAX_S:g}"}  # fmt: skip
        port = self.stub_url.rsplit(":", 1)[1]
        # The stub stands for the GPU servers, other machines: on this shared box it gets the
        # CPU first, so the arrival times it stamps are not late by our own load (as root;
        # otherwise nice says it cannot and runs it at normal priority).
        self.stub = self._service("stub_ai", ["-m", "loadtest.stub_ai", "--port", port], env,
                                  nice=STUB_NICE)  # fmt: skip
        wait_for(lambda: answers(f"{self.stub_url}/stub/stats"), "the stub", [self.stub], 30)

    def _workers_live(self) -> bool:
        live = on_redis(self.redis_url, lambda c: c.zcard(QueueKeys.for_queue(self.queue).workers))
        return int(live) >= len(self.workers)

    def _delete_queue_keys(self) -> None:
        """Remove every key of this run's queue from a Redis that outlives the run."""

        async def delete(client: Redis) -> None:
            keys = await queue_keys(client, self.queue)
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])

        on_redis(self.redis_url, delete)


def on_redis(url: str, step: Callable[[Redis], Awaitable[T]]) -> T:
    """``step`` on a short-lived client of ``url`` (plain, Sentinel or Cluster)."""

    async def run() -> T:
        client = command_client(url)
        try:
            return await step(client)
        finally:
            await client.aclose()

    return asyncio.run(run())


async def queue_keys(client: Redis, queue: str) -> list[str]:
    """Every key of ``queue`` and of its webhook deliveries' queue (on every primary of a
    cluster)."""
    return [key for tag in (queue, f"{queue}-webhooks")
            async for key in client.scan_iter(match=f"*{{{tag}}}*", count=1000)]  # fmt: skip


async def _migrate(database_url: str) -> None:
    store = await open_store(database_url)
    await store.close()
