"""``imagequeue-api serve`` as a real process on a free port, for tests over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from imagequeue_common.embedded_redis import free_port
from tests.support.procs import ROOT


class ApiServer:
    """The API in its own process group; ``url`` once :meth:`start` returns."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env, "API_PORT": str(self.port), "PYTHONPATH": str(ROOT)}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30) -> ApiServer:
        """Spawn and wait until ``/healthz`` answers."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "imagequeue_api", "serve"],
                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the API did not start; see {self.log_path}")
            time.sleep(0.05)
        return self

    def wait_log(self, text: str, timeout_s: float = 30) -> None:
        """Wait until the server's output contains ``text`` (e.g. all processes ready)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log_path.read_text(errors="replace"):
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the API's output; see {self.log_path}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, signum: int = signal.SIGTERM) -> int | None:
        """``signum`` (SIGTERM) to the process group; SIGKILL after 10 s. The exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        os.killpg(self.proc.pid, signum)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        return self.proc.returncode
