"""A compose project of imagequeue under test: started from ``infra/``'s files, asked for
keys and live workers through its own CLIs, and torn down with its volumes."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loadtest.compose.client import Api
from loadtest.compose.docker import INFRA, DockerError, Project, docker, registry_answers

LOCAL = {"PYTHON_IMAGE": "iq-local-python:3.11", "REDIS_IMAGE": "iq-local-redis:7",
         "POSTGRES_IMAGE": "iq-local-postgres:15"}  # fmt: skip
"""The stand-ins ``just local-bases`` makes, used when no registry answers."""

APP_SERVICES = ("api", "worker", "webhooks", "scheduler", "stub-ai")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def base_images() -> dict[str, str]:
    """The official images when they can be had, else the local stand-ins (which must
    exist: ``just local-bases``)."""
    if registry_answers():
        return {}
    missing = [i for i in LOCAL.values() if not docker("image", "ls", "-q", i).strip()]
    if missing:
        raise DockerError(f"no registry answers and {', '.join(missing)} are missing: "
                          "run `uv run just local-bases` first")  # fmt: skip
    return dict(LOCAL)


def run_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """What the compose files read, for a fast run: the stub at 1/20 of a real GPU's
    30-60 s, leases of 10 s (a killed worker's jobs come back within 10 s, not 30)."""
    return {**os.environ, **base_images(), "ADMIN_PASSWORD": secrets.token_urlsafe(18),
            "STUB_TIME_SCALE": "0.05", "LEASE_MS": "10000", "RATE_LIMIT_MAX": "10",
            "BUILD_NETWORK": "host", **(extra or {})}  # fmt: skip


def new_key(project: Project, user: str, tier: str = "regular") -> str:
    """A key made with ``imagequeue-api keys create`` in the API container."""
    out = project.exec("api", "imagequeue-api", "keys", "create", "--user", user, "--tier", tier)
    for line in out.splitlines():
        if line.startswith("key: "):
            return line.removeprefix("key: ").strip()
    raise DockerError(f"keys create printed no key: {out}")


def live_workers(project: Project) -> list[dict[str, Any]]:
    """The live workers, from ``imagequeue-worker workers`` run in the API container."""
    out = project.exec("api", "imagequeue-worker", "workers")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def wait_workers(project: Project, count: int, timeout_s: float) -> float:
    """Seconds until exactly ``count`` workers are live."""
    started = time.monotonic()
    while (n := len(live_workers(project))) != count:
        if time.monotonic() - started > timeout_s:
            raise DockerError(f"{n} live workers after {timeout_s:.0f} s, not {count}")
        time.sleep(1)
    return time.monotonic() - started


def stub_stats(project: Project, service: str = "api") -> dict[str, Any]:
    """The stub AI server's ``/stub/stats``, read from inside the project's network."""
    url = "http://stub-ai:8090/stub/stats"
    code = f"import urllib.request as u; print(u.urlopen('{url}', timeout=5).read().decode())"
    found: dict[str, Any] = json.loads(project.exec(service, "python", "-c", code))
    return found


def stub_config(project: Project, **changes: float) -> None:
    """Change the stub AI server's config (``POST /stub/config``) from inside the network."""
    code = ("import json, sys, urllib.request as u; "
            "u.urlopen(u.Request('http://stub-ai:8090/stub/config', data=sys.argv[1].encode(), "
            "headers={'Content-Type': 'application/json'}), timeout=5)")  # fmt: skip
    project.exec("api", "python", "-c", code, json.dumps(changes))


def apis(base_url: str, project: Project, users: int, prefix: str = "u") -> list[Api]:
    """``users`` users, each with a key of its own."""
    return [Api(base_url, new_key(project, f"{prefix}{i}")) for i in range(users)]


def logs_not_json(container: str) -> int:
    """Lines of the container's output that are not JSON objects."""
    done = subprocess.run(["docker", "logs", container], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return sum(1 for line in lines if not line.lstrip().startswith("{"))


def files(*names: str) -> list[Path]:
    """Files of ``infra/``."""
    return [INFRA / name for name in names]
