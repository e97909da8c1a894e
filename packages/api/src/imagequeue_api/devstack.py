"""``just up``: the whole service on one machine with embedded defaults.

Uses ``REDIS_URL``/``REDIS_HOST`` when set; else the Redis on 127.0.0.1:6379 if one answers;
else a private redis-server with its data under ``DATA_DIR/redis``. Without
``AI_GENERATION_API_URL`` it starts the stub AI server (``loadtest/stub_ai``, run from the
repository root) with short latencies. Then it runs the API (``API_HOST:API_PORT``, 8088),
one worker, the cleanup scheduler, prints a ready development key, and runs a demo that
creates characters over HTTP (each queues its image) and prints the queue's counts.
Ctrl-C stops everything in order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx

from imagequeue_common.embedded_redis import EmbeddedRedis, answers, free_port
from imagequeue_common.errors import SettingsError
from imagequeue_common.settings import Settings, load_settings

_PRIORITIES = ("high", "normal", "normal", "low")
DEV_KEY_FILE = "dev-api-key"
ADMIN_FILE = "dev-admin-password"


def say(text: str) -> None:
    """One line for the person at the terminal."""
    print(f"[imagequeue] {text}", flush=True)


@contextlib.contextmanager
def redis_for(settings: Settings, private: bool) -> Iterator[str]:
    """The Redis URL to use, starting a private server when none is configured or running."""
    if settings.redis_url and not private:
        say(f"using Redis at {settings.redis_url.split('@')[-1]}")
        yield settings.redis_url
        return
    if not private and answers("127.0.0.1", 6379):
        say("using the Redis that answers on 127.0.0.1:6379")
        yield settings.redis_url_or_default
        return
    server = EmbeddedRedis(Path(settings.data_dir) / "redis", persistent=True)
    url = server.start()
    say(f"started a private redis-server on port {server.port} (data in {server.data_dir})")
    try:
        yield url
    finally:
        server.stop()
        say("stopped the private redis-server")


@contextlib.contextmanager
def upstream_for(settings: Settings) -> Iterator[dict[str, str]]:
    """Settings that point workers at an AI API: the configured one, else the stub's."""
    if settings.ai_generation_api_url or not settings.ai_generation_enabled:
        yield {}
        return
    port = free_port()
    # The seed's GPU takes 30-60 s per image; a local try-out should not.
    env = {"STUB_LATENCY_MIN_S": "1", "STUB_LATENCY_MAX_S": "3", **os.environ}
    stub = spawn(["-m", "loadtest.stub_ai", "--port", str(port)], env)
    try:
        deadline = time.monotonic() + 20
        while not _http_answers(f"http://127.0.0.1:{port}/stub/stats"):
            if stub.poll() is not None or time.monotonic() > deadline:
                raise SettingsError("the stub AI server did not start (run from the repo root)")
            time.sleep(0.05)
        say(f"started the stub AI server on http://127.0.0.1:{port} (no AI_GENERATION_API_URL)")
        yield {
            "AI_GENERATION_API_URL": f"http://127.0.0.1:{port}/generate",
            "AI_GENERATION_BACKEND": "generic",
        }
    finally:
        stop([stub])


def _http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - our own URL
            return bool(answer.status == 200)
    except OSError:
        return False


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child process in its own process group (so Ctrl-C reaches us first)."""
    return subprocess.Popen([sys.executable, *args], env=env, start_new_session=True)  # noqa: S603


def stop(children: list[subprocess.Popen[bytes]]) -> None:
    """Stop children newest first: each finishes its running jobs, then exits."""
    for child in reversed(children):
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGINT)
    for child in reversed(children):
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def kept_secret(settings: Settings, name: str, prefix: str) -> str:
    """A secret kept in ``DATA_DIR/<name>`` (0600), made on first use."""
    path = Path(settings.data_dir) / name
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = f"{prefix}{secrets.token_urlsafe(24)}"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def dev_key(settings: Settings) -> str:
    """``API_DEV_KEY``, else the one kept in ``DATA_DIR/dev-api-key``."""
    return settings.api_dev_key or kept_secret(settings, DEV_KEY_FILE, "dev_")


def wait_for_api(url: str, children: list[subprocess.Popen[bytes]], timeout_s: float = 30) -> None:
    """Until ``/readyz`` answers 200 (or a child died, or the deadline passed)."""
    deadline = time.monotonic() + timeout_s
    while not _http_answers(f"{url}/readyz"):
        if any(c.poll() is not None for c in children) or time.monotonic() > deadline:
            raise SettingsError(f"the API did not become ready on {url}")
        time.sleep(0.1)


async def demo(api_url: str, key: str, jobs: int, until_done: bool) -> None:
    """Create ``jobs`` characters over HTTP (mixed priorities) and report the counts."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as client:
        poses = (await client.get("/api/v1/poses")).raise_for_status().json()["data"]
        ids = []
        for i in range(jobs):
            body = {"name": f"Demo Character {i}", "priority": _PRIORITIES[i % 4],
                    "personality": {"poseId": poses[i % len(poses)]["_id"]}}  # fmt: skip
            made = (await client.post("/api/v1/characters", json=body)).raise_for_status()
            ids.append(made.json()["data"]["_id"])
        say(f"queued {jobs} demo jobs")
        seed = ("waiting", "active", "completed", "failed", "delayed", "total")
        while True:
            stats = (await client.get("/api/v1/queue/stats")).raise_for_status().json()["data"]
            say(" ".join(f"{k}={stats[k]}" for k in seed))
            if until_done and stats["waiting"] + stats["active"] + stats["delayed"] == 0:
                break
            await asyncio.sleep(2)
        for character_id in ids[:3]:
            data = (await client.get(f"/api/v1/characters/{character_id}")).json()["data"]
            say(f"{data['name']}: {', '.join(data['displayImageUrls']) or 'no image'}")


def main(argv: list[str] | None = None) -> int:
    """Run the local stack; returns the exit code."""
    parser = argparse.ArgumentParser(prog="just up")
    parser.add_argument("--demo-jobs", type=int, default=20, help="demo jobs to queue (0: none)")
    parser.add_argument("--exit-when-done", action="store_true",
                        help="stop once the demo jobs are finished (for smoke tests)")  # fmt: skip
    parser.add_argument("--private-redis", action="store_true",
                        help="always start a private redis-server")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        say(f"bad setting: {exc}")
        return 2
    key = dev_key(settings)
    admin_password = settings.admin_password or kept_secret(settings, ADMIN_FILE, "")
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    with redis_for(settings, args.private_redis) as url, upstream_for(settings) as upstream:
        env = {**os.environ, "REDIS_URL": url, "API_DEV_KEY": key,
               "ADMIN_PASSWORD": admin_password, **upstream}  # fmt: skip
        children = [
            spawn(["-m", "imagequeue_api", "serve"], env),
            spawn(["-m", "imagequeue_worker", "run"], env),
            spawn(["-m", "imagequeue_worker", "scheduler"], env),
        ]
        try:
            wait_for_api(api_url, children)
            say(f"API on {api_url} (OpenAPI: {api_url}/schema); worker and scheduler started")
            say(f"development key (premium user 'dev'): {key}")
            say(f"  try: curl -H 'Authorization: Bearer {key}' {api_url}/api/v1/queue/stats")
            say(f"dashboard: {api_url}/admin/queues (login {settings.admin_username} / "
                f"{admin_password})")  # fmt: skip
            say("Ctrl-C stops everything")
            if args.demo_jobs > 0:
                asyncio.run(demo(api_url, key, args.demo_jobs, args.exit_when_done))
            if not args.exit_when_done:
                while all(child.poll() is None for child in children):
                    time.sleep(0.5)
        except KeyboardInterrupt:
            say("stopping")
        finally:
            stop(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
