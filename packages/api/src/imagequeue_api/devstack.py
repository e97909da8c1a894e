"""``just up``: the whole service on one machine with embedded defaults.

Uses ``REDIS_URL``/``REDIS_HOST`` when set; else the Redis on 127.0.0.1:6379 if one answers;
else a private redis-server with its data under ``DATA_DIR/redis``. Without
``AI_GENERATION_API_URL`` it starts the stub AI server (``loadtest/stub_ai``, run from the
repository root) with short latencies. Then it runs the API (``API_HOST:API_PORT``, 8088),
one worker, one webhook worker (deliveries to receivers on this machine over plain http
are allowed here, unless ``WEBHOOK_ALLOW_HTTP``/``WEBHOOK_PRIVATE_HOSTS`` say otherwise),
the cleanup scheduler, prints a ready development key, and runs a demo that creates
characters over HTTP (each queues its image) and prints the queue's counts.
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
from pathlib import Path

import httpx
from redis.exceptions import RedisError

from imagequeue_api.demo import DemoError, PacedClient, run_demo
from imagequeue_api.devservices import http_answers, redis_for, say, spawn, stop, upstream_for
from imagequeue_api.launcher import Launcher, SignalsCaught, launchers
from imagequeue_api.serving import port_in_use
from imagequeue_common.embedded_redis import EmbeddedRedisError
from imagequeue_common.errors import SettingsError
from imagequeue_common.redis_conn import command_client
from imagequeue_common.runtime import STOP_SIGNALS, ignore_late_stop_signals
from imagequeue_common.settings import Settings, load_settings
from imagequeue_common.webhook_secrets import WebhookSecrets
from imagequeue_common.webhook_signing import new_secret

DEV_KEY_FILE = "dev-api-key"
ADMIN_FILE = "dev-admin-password"
DEV_WEBHOOK_FILE = "dev-webhook-secret"
SIGNAL_POLL_S = 0.2  # how often just's signal count is read: a stop this much later is fine


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


def dev_webhook_secret(settings: Settings) -> str:
    """The development key's webhook secret, kept in ``DATA_DIR/dev-webhook-secret``."""
    path = Path(settings.data_dir) / DEV_WEBHOOK_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_secret() + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


async def install_dev_webhook_secret(url: str, settings: Settings) -> str:
    """Give the development key (id ``dev``) its kept webhook secret, so webhooks can be
    tried with it; the secret."""
    secret = dev_webhook_secret(settings)
    client = command_client(url)
    try:
        await WebhookSecrets(client, settings.queue_name).create("dev", secret)
    finally:
        await client.aclose()
    return secret


def dev_key(settings: Settings) -> str:
    """``API_DEV_KEY``, else the one kept in ``DATA_DIR/dev-api-key``."""
    return settings.api_dev_key or kept_secret(settings, DEV_KEY_FILE, "dev_")


async def wait_for_api(url: str, children: list[subprocess.Popen[bytes]],
                       shutdown: Shutdown, timeout_s: float = 30) -> bool:  # fmt: skip
    """Until ``/readyz`` answers 200: True; False when a stop was asked for first. Raises
    when a child died or the deadline passed."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(http_answers, f"{url}/readyz"):
        if shutdown.requested.is_set():
            return False
        if any(c.poll() is not None for c in children) or time.monotonic() > deadline:
            raise SettingsError(f"the API did not become ready on {url}")
        await asyncio.sleep(0.1)
    return True


class Shutdown:
    """Turns SIGINT, SIGTERM and SIGHUP into one ordered stop.

    A terminal sends Ctrl-C to its whole foreground process group (``uv`` and ``just`` wait
    for us); a second Ctrl-C, which ``uv`` passes on, or a SIGTERM forwarded by ``uv`` and
    ``just`` may follow. The first starts the stop; the others must not cut it short.

    A closed terminal is watched for as well: its SIGHUP goes to the session leader only,
    and when that is ``uv`` (a terminal whose first program is ``uv run just up``) uv passes
    it to ``just``, which passes nothing on. So the terminal itself says it is gone: end of
    input on it (EIO once the window closed; Ctrl-D too) stops the stack.

    And so do the processes that launched us ending (:mod:`launcher`): a ``uv`` killed
    outright must not leave the stack running with nobody to stop it. And a signal that
    ``just`` caught and kept (a SIGINT sent to ``uv`` alone, which ``uv`` passes to ``just``)
    is seen in ``just``'s signal count.
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()

    def install(self) -> None:
        """Handle the signals, and the terminal's end, in the running event loop."""
        loop = asyncio.get_running_loop()
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, self._on_signal, signum)
        if _leads_terminal(sys.stdin.fileno()):
            loop.add_reader(sys.stdin.fileno(), self._on_terminal, sys.stdin.fileno())
        for parent in launchers():
            loop.add_reader(parent.fd, self._on_launcher_end, parent)
            if parent.name == "just" and (caught := SignalsCaught.of(parent.pid)):
                loop.call_later(SIGNAL_POLL_S, self._watch_just, caught)

    def _watch_just(self, caught: SignalsCaught) -> None:
        if self.requested.is_set():
            return
        loop = asyncio.get_running_loop()
        if not caught.rose():
            loop.call_later(SIGNAL_POLL_S, self._watch_just, caught)
            return
        # A terminal's Ctrl-C reaches just and us at once: a moment's grace lets our own
        # SIGINT be the stop that is reported.
        why = (f"just (pid {caught.pid}) caught a signal that it does not pass on (a SIGINT "
               "to uv alone): stopping (running jobs finish first)")  # fmt: skip
        loop.call_later(SIGNAL_POLL_S, self._stop, why)

    def _on_launcher_end(self, parent: Launcher) -> None:
        asyncio.get_running_loop().remove_reader(parent.fd)
        os.close(parent.fd)
        self._stop(f"{parent.name} (pid {parent.pid}), which started us, ended: stopping "
                   "(running jobs finish first)")  # fmt: skip

    def _on_signal(self, signum: int) -> None:
        self._stop(f"{signal.Signals(signum).name}: stopping (running jobs finish first)")

    def _on_terminal(self, fd: int) -> None:
        try:
            typed = os.read(fd, 4096)  # what someone typed is dropped: nothing reads it
        except BlockingIOError:
            return
        except OSError:  # EIO: the terminal is gone
            typed = b""
        if not typed:
            asyncio.get_running_loop().remove_reader(fd)
            self._stop("the terminal closed: stopping (running jobs finish first)")

    def _stop(self, why: str) -> None:
        first = not self.requested.is_set()
        self.requested.set()  # before anything that could fail
        if first:
            say(why)

    async def wait(self, children: list[subprocess.Popen[bytes]]) -> int:
        """Until a stop is asked for (0) or a child exits by itself (1)."""
        while not self.requested.is_set():
            for child in children:
                if child.poll() is not None:
                    say(f"process {child.pid} exited by itself (status {child.returncode}); "
                        "stopping")  # fmt: skip
                    return 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.requested.wait(), 0.5)
        return 0


def _leads_terminal(fd: int) -> bool:
    """True when ``fd`` is a terminal and this process is in its foreground group (reading
    it from the background would stop us with SIGTTIN)."""
    try:
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


async def run_demo_safely(api_url: str, key: str, jobs: int, settings: Settings) -> None:
    """The demo (:mod:`demo`); an error ends it with one line, the stack keeps running."""
    per_second = min(10.0, settings.api_user_rps / 2) if settings.api_user_rps else 10.0
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as http:
        try:
            await run_demo(PacedClient(http, per_second, say), jobs, say)
        except DemoError as exc:
            say(f"demo stopped: {exc}")


async def run_stack(args: argparse.Namespace, settings: Settings) -> int:
    """Start everything, run the demo, wait for a stop, stop in order; the exit code."""
    shutdown = Shutdown()
    shutdown.install()
    key = dev_key(settings)
    admin_password = settings.admin_password or kept_secret(settings, ADMIN_FILE, "")
    api_url = f"http://{settings.api_host}:{settings.api_port}"
    if port_in_use(settings.api_host, settings.api_port):
        say(f"{settings.api_host}:{settings.api_port} is in use already (another just up?): "
            "stop it or set API_PORT")  # fmt: skip
        return 2
    # Entered in this order, so stopped in the reverse one: the API first (no new work),
    # then the worker (its running jobs finish and are saved), the webhook worker (which
    # hands on their last events), the scheduler, the stub the
    # worker was still talking to, and Redis last, when nothing writes to it any more.
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(redis_for(settings, args.private_redis))
        upstream = stack.enter_context(upstream_for(settings))
        env = {**os.environ, "REDIS_URL": url, "API_DEV_KEY": key,
               "ADMIN_PASSWORD": admin_password, **upstream}  # fmt: skip
        env.setdefault("WEBHOOK_ALLOW_HTTP", "true")  # a receiver on this machine
        env.setdefault("WEBHOOK_PRIVATE_HOSTS", "127.0.0.1,::1,localhost")
        children: list[subprocess.Popen[bytes]] = []
        worker_stop_s = settings.ai_total_timeout_s + 30.0  # its running jobs finish first
        for name, args_, timeout_s in [
            ("scheduler", ["imagequeue_worker", "scheduler"], 30.0),
            (
                "webhook worker",
                ["imagequeue_worker", "webhooks"],
                settings.webhook_timeout_s * 2 + 20.0,
            ),
            ("worker", ["imagequeue_worker", "run"], worker_stop_s),
            ("API", ["imagequeue_api", "serve"], 30.0),
        ]:
            children.append(spawn(["-m", *args_], env))
            stack.callback(stop, children[-1:], timeout_s, name)
        if not await wait_for_api(api_url, children, shutdown):
            return 0
        announce(settings, api_url, key, admin_password)
        try:
            secret = await install_dev_webhook_secret(url, settings)
            say(f"its webhook secret (signs its webhooks): {secret}")
        except RedisError as exc:
            say(f"could not give the development key its webhook secret: {exc}")
        demo = None
        if args.demo_jobs > 0:
            demo = asyncio.create_task(run_demo_safely(api_url, key, args.demo_jobs, settings))
        if args.exit_when_done and demo is not None:
            await asyncio.wait([demo, asyncio.create_task(shutdown.requested.wait())],
                               return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            code = 0
        else:
            code = await shutdown.wait(children)
        if demo is not None and not demo.done():
            demo.cancel()
            await asyncio.gather(demo, return_exceptions=True)
        return code


def announce(settings: Settings, api_url: str, key: str, admin_password: str) -> None:
    """What the person at the terminal needs to try the stack."""
    say(f"API on {api_url} (OpenAPI: {api_url}/schema); worker, webhook worker and "
        "scheduler started")  # fmt: skip
    say(f"development key (premium user 'dev'): {key}")
    say(f"  try: curl -H 'Authorization: Bearer {key}' {api_url}/api/v1/queue/stats")
    say(f"dashboard: {api_url}/admin/queues (login {settings.admin_username} / "
        f"{admin_password})")  # fmt: skip
    say("Ctrl-C stops everything")


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
    try:
        code = asyncio.run(run_stack(args, settings))
    except (SettingsError, EmbeddedRedisError) as exc:
        say(f"could not start: {exc}")
        code = 1
    finally:
        ignore_late_stop_signals()
    say("stopped" if code == 0 else f"stopped (exit status {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
