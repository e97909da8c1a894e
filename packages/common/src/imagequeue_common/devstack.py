"""``just up``: the whole service on one machine with embedded defaults.

Uses ``REDIS_URL``/``REDIS_HOST`` when set; else the Redis on 127.0.0.1:6379 if one answers;
else a private redis-server with its data under ``DATA_DIR/redis``. Without
``AI_GENERATION_API_URL`` it starts the stub AI server (``loadtest/stub_ai``, run from the
repository root) with short latencies. Then it runs one worker, the cleanup scheduler and
(until the HTTP API exists) a demo that creates characters in the store (SQLite under
``DATA_DIR`` by default), queues their images and prints the queue's counts. Ctrl-C stops
everything in order.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from imagequeue_common.contracts import CharacterRef, PoseRef, Priority
from imagequeue_common.embedded_redis import EmbeddedRedis, answers, free_port
from imagequeue_common.errors import SettingsError
from imagequeue_common.generation import add_image_generation_job, get_queue_stats
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import Settings, load_settings
from imagequeue_common.store import CharacterStore, NewCharacter, open_store

_PRIORITIES = (Priority.HIGH, Priority.NORMAL, Priority.NORMAL, Priority.LOW)


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


async def demo(settings: Settings, redis_url: str, jobs: int, until_done: bool) -> None:
    """Create ``jobs`` characters, queue their images (mixed priorities), report the counts."""
    store = await open_store(settings.database_url)
    broker = EngineBroker(settings, redis_url)
    await broker.startup()
    try:
        ids = await _queue_demo_jobs(broker, store, jobs)
        say(f"queued {jobs} demo jobs")
        while True:
            stats = await get_queue_stats(broker)
            say(" ".join(f"{k}={v}" for k, v in stats.items()))
            if until_done and stats["waiting"] + stats["active"] + stats["delayed"] == 0:
                break
            await asyncio.sleep(2)
        for character_id in ids[:3]:
            character = await store.get_character(character_id)
            say(f"{character.name}: {', '.join(character.display_image_urls) or 'no image'}")
    finally:
        await broker.shutdown()
        await store.close()


async def _queue_demo_jobs(broker: EngineBroker, store: CharacterStore, jobs: int) -> list[str]:
    poses = await store.list_poses()
    ids: list[str] = []
    for i in range(jobs):
        pose = poses[i % len(poses)]
        character = await store.create_character(
            NewCharacter(user_id="demo-user", name=f"Demo Character {i}", pose_id=pose.id)
        )
        job_id = await add_image_generation_job(
            broker,
            CharacterRef(id=character.id, name=character.name),
            PoseRef(id=pose.id, name=pose.name),
            "demo-user",
            _PRIORITIES[i % 4],
        )
        await store.set_image_job(character.id, job_id)
        ids.append(character.id)
    return ids


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
    with redis_for(settings, args.private_redis) as url, upstream_for(settings) as upstream:
        env = {**os.environ, "REDIS_URL": url, **upstream}
        children = [
            spawn(["-m", "imagequeue_worker", "run"], env),
            spawn(["-m", "imagequeue_worker", "scheduler"], env),
        ]
        say("worker and scheduler started; Ctrl-C stops everything")
        try:
            if args.demo_jobs > 0:
                asyncio.run(demo(settings, url, args.demo_jobs, args.exit_when_done))
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
