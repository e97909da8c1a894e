"""The Docker side of ``just compose-test``: a compose project driven through the CLI a user
has (``docker compose`` v2 when the plugin is there, else ``docker-compose`` 1.29), and the
containers inspected with ``docker``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"


class DockerError(RuntimeError):
    """A docker command failed; the message has its output."""


def docker(*args: str, timeout_s: float = 600, check: bool = True) -> str:
    """``docker args``; its standard output."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True,
                          timeout=timeout_s, check=False)  # fmt: skip
    if check and done.returncode != 0:
        raise DockerError(f"docker {' '.join(args)}: {done.stderr.strip() or done.stdout}")
    return done.stdout


def compose_command() -> list[str]:
    """``docker compose`` when the plugin answers, else ``docker-compose``."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise DockerError("neither `docker compose` nor `docker-compose` is installed")


class Project:
    """One compose project: its name, its files and the variables the files read."""

    def __init__(self, name: str, files: Sequence[Path], env: Mapping[str, str]) -> None:
        self.name, self.files, self.env = name, list(files), dict(env)
        self._base = [*compose_command(), "-p", name]
        for file in self.files:
            self._base += ["-f", str(file)]

    def run(self, *args: str, timeout_s: float = 900, check: bool = True) -> str:
        """``compose args`` in this project; its standard output."""
        done = subprocess.run([*self._base, *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout_s, check=False)  # fmt: skip
        if check and done.returncode != 0:
            raise DockerError(f"compose {' '.join(args)}: {done.stderr.strip()[-2000:]}")
        return done.stdout

    def containers(self, service: str | None = None) -> list[str]:
        """Ids of the service's containers (every service's without one)."""
        return self.run("ps", "-q", *([service] if service else [])).split()

    def exec(self, service: str, *command: str) -> str:
        """``command`` in the service's first container; its output."""
        return self.run("exec", "-T", service, *command, timeout_s=120)

    def down(self) -> None:
        """Stop and remove everything of the project, volumes too."""
        self.run("down", "-v", "--remove-orphans", "-t", "30", check=False)


def inspect(container: str) -> dict[str, object]:
    """``docker inspect`` of one container."""
    found: list[dict[str, object]] = json.loads(docker("inspect", container))
    return found[0]


def health(container: str) -> str:
    """``healthy``, ``unhealthy``, ``starting``, or ``none`` without a healthcheck."""
    state = inspect(container)["State"]
    assert isinstance(state, dict)
    status = state.get("Health", {}).get("Status") if "Health" in state else None
    return str(status or "none")


def restart_count(container: str) -> int:
    """How often Docker restarted the container (a crash under ``restart: unless-stopped``)."""
    return int(str(inspect(container)["RestartCount"]))


def hostname(container: str) -> str:
    """The host name inside the container (what a worker's heartbeat reports)."""
    config = inspect(container)["Config"]
    assert isinstance(config, dict)
    return str(config["Hostname"])


def wait_healthy(containers: Sequence[str], timeout_s: float) -> float:
    """Seconds until every container with a healthcheck is healthy; raises at the deadline
    or when one turns unhealthy."""
    started = time.monotonic()
    while True:
        states = {c: health(c) for c in containers}
        if all(s in ("healthy", "none") for s in states.values()):
            return time.monotonic() - started
        bad = [c[:12] for c, s in states.items() if s == "unhealthy"]
        if bad or time.monotonic() - started > timeout_s:
            raise DockerError(f"not healthy after {time.monotonic() - started:.0f} s: {states}")
        time.sleep(1)


def image_size(image: str) -> int:
    """The image's size in bytes."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", image).strip())


def registry_answers(image: str = "python:3.11-slim") -> bool:
    """True when ``image`` is here or can be pulled."""
    if docker("image", "inspect", image, check=False, timeout_s=30).strip() not in ("", "[]"):
        return True
    pulled = subprocess.run(["docker", "pull", "-q", image], capture_output=True,
                            timeout=120, check=False)  # fmt: skip
    return pulled.returncode == 0
