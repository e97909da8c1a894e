"""The stub AI server as a real subprocess for tests: started, steered, stopped."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from imagequeue_common.embedded_redis import free_port

ROOT = Path(__file__).resolve().parents[2]


class StubServer:
    """``python -m loadtest.stub_ai`` on a free port, output to ``log_path``."""

    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.env = env or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.initial_config: dict[str, Any] = {}
        """The config it started with (from ``env``), to restore between tests."""
        self._client = httpx.Client(base_url=self.url, timeout=10)

    def start(self, timeout_s: float = 30) -> StubServer:
        """Spawn the stub and wait until ``GET /stub/stats`` answers; returns self."""
        env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "loadtest.stub_ai", "--port", str(self.port)],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_text = self.log_path.read_text(errors="replace")[-2000:]
                raise AssertionError(f"stub_ai did not start on {self.url}:\n{log_text}")
            time.sleep(0.05)  # poll interval, not a guessed wait
        self.initial_config = self.config()
        return self

    def configure(self, **changes: Any) -> dict[str, Any]:
        """``POST /stub/config`` with ``changes``; the new config (fails the test on 422)."""
        response = self._client.post("/stub/config", json=changes)
        assert response.status_code == 200, response.text
        config: dict[str, Any] = response.json()
        return config

    def config(self) -> dict[str, Any]:
        """``GET /stub/config``."""
        config: dict[str, Any] = self._client.get("/stub/config").raise_for_status().json()
        return config

    def reset(self) -> dict[str, Any]:
        """``POST /stub/reset``: clear stats and script; the cleared stats."""
        stats: dict[str, Any] = self._client.post("/stub/reset").raise_for_status().json()
        return stats

    def stats(self) -> dict[str, Any]:
        """``GET /stub/stats``."""
        stats: dict[str, Any] = self._client.get("/stub/stats").raise_for_status().json()
        return stats

    def wait_idle(self, timeout_s: float = 10) -> None:
        """Wait until no submission is in flight (hung clients gone, jobs done or cancelled)."""
        deadline = time.monotonic() + timeout_s
        while (in_flight := self.stats()["in_flight"]) != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"stub_ai still has {in_flight} in flight after {timeout_s}s")
            time.sleep(0.02)  # poll interval

    def stop(self, timeout_s: float = 10) -> int | None:
        """Terminate, then kill after ``timeout_s``; returns the exit code."""
        self._client.close()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def _answers(self) -> bool:
        try:
            return self._client.get("/stub/stats", timeout=1).status_code == 200
        except httpx.TransportError:
            return False
