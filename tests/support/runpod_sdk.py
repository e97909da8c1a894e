"""RunPod's SDK test server (``--rp_serve_api``) as a real subprocess: started, stopped.

It serves ``POST /run``, ``POST /status/{id}`` (which runs the handler inside the request),
``POST /runsync`` and ``POST /stream/{id}``, no auth and no ``/cancel``; see
:mod:`tests.support.runpod_handler` for what its handler answers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from imagequeue_common.embedded_redis import free_port

HANDLER = Path(__file__).with_name("runpod_handler.py")


class RunPodSDKServer:
    """``python runpod_handler.py --rp_serve_api`` on 127.0.0.1 and a free port."""

    def __init__(self, log_path: Path, handler: Path = HANDLER) -> None:
        self.log_path = log_path
        self.handler = handler
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_in_s = 0.0
        """How long the SDK took from spawn to its first answer."""

    def start(self, timeout_s: float = 60) -> RunPodSDKServer:
        """Spawn the server and poll ``GET /openapi.json`` until it answers; returns self."""
        argv = [sys.executable, str(self.handler), "--rp_serve_api", "--rp_api_host",
                "127.0.0.1", "--rp_api_port", str(self.port), "--rp_log_level", "WARN"]  # fmt: skip
        # Nothing that would make the SDK believe it runs on RunPod (it would ping out).
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        deadline = began + timeout_s
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise AssertionError(f"the RunPod SDK server did not start on {self.url}:\n{tail}")
            time.sleep(0.05)  # poll interval, not a guessed wait
        self.started_in_s = time.monotonic() - began
        return self

    def stop(self, timeout_s: float = 10) -> int | None:
        """SIGTERM its process group, SIGKILL after ``timeout_s``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/openapi.json", timeout=1).status_code == 200
        except httpx.TransportError:
            return False
