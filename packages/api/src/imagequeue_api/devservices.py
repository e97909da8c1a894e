"""The services ``just up`` starts and stops: Redis, the stub AI server, our processes.

Each child runs in a session of its own, so a terminal's Ctrl-C reaches only ``just up``,
which then stops them one at a time, in order (see :mod:`devstack`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from imagequeue_common.embedded_redis import EmbeddedRedis, answers, free_port
from imagequeue_common.errors import SettingsError
from imagequeue_common.settings import Settings


def say(text: str) -> None:
    """One line for the person at the terminal, if there still is one.

    A closed terminal window (EIO) or a reader that went away (EPIPE) must not stop the
    stop: the SIGHUP that comes with it is the very signal that has to end everything. From
    then on the lines go nowhere, so the interpreter's last flush cannot fail either.
    """
    try:
        print(f"[imagequeue] {text}", flush=True)
    except (OSError, ValueError):  # ValueError: stdout closed already
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process


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
        while not http_answers(f"http://127.0.0.1:{port}/stub/stats"):
            if stub.poll() is not None or time.monotonic() > deadline:
                raise SettingsError("the stub AI server did not start (run from the repo root)")
            time.sleep(0.05)
        mean_s = _stub_mean_latency_s(f"http://127.0.0.1:{port}/stub/config")
        say(f"started the stub AI server on http://127.0.0.1:{port} (no AI_GENERATION_API_URL; "
            f"{mean_s:g} s per image on average)")  # fmt: skip
        upstream = {
            "AI_GENERATION_API_URL": f"http://127.0.0.1:{port}/generate",
            "AI_GENERATION_BACKEND": "generic",
        }
        if "EXPECTED_JOB_S" not in os.environ:
            # The ETA's job time until the queue has measured its own: the stub's, not the
            # seed's 45 s GPU, or the first ETAs of the demo would be 20 times too long.
            upstream["EXPECTED_JOB_S"] = f"{mean_s:g}"
        yield upstream
    finally:
        stop([stub], name="stub AI server")


def _stub_mean_latency_s(config_url: str) -> float:
    """The running stub's mean time per image, from its own config."""
    with urllib.request.urlopen(config_url, timeout=5) as answer:  # noqa: S310 - our own URL
        config = json.load(answer)
    low, high, scale = config["latency_min_s"], config["latency_max_s"], config["time_scale"]
    return round(float(low + high) / 2 * float(scale), 3)


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as answer:  # noqa: S310 - our own URL
            return bool(answer.status == 200)
    except OSError:
        return False


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A child process in a session of its own: a terminal's Ctrl-C reaches only us, and we
    stop the children one by one, in order."""
    return subprocess.Popen([sys.executable, *args], env=env, start_new_session=True)  # noqa: S603


def stop(children: list[subprocess.Popen[bytes]], timeout_s: float = 30, name: str = "") -> None:
    """Stop children newest first, each after the one before has exited: SIGTERM (each
    finishes what it is doing), SIGKILL only past ``timeout_s``.

    SIGTERM, not SIGINT: every process here stops gracefully on either, and one still
    importing its modules (a stop during start-up) ends quietly on SIGTERM instead of
    printing a ``KeyboardInterrupt`` traceback.
    """
    for child in reversed(children):
        if child.poll() is None:
            if name:
                say(f"stopping the {name}")
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            say(f"process {child.pid} did not stop within {timeout_s:g} s; killing it")
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
