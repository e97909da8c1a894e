"""``uv run just up`` exactly as the README writes it: no flags, no settings, a fresh checkout.

The one test here that matters most to a newcomer. It copies the repository's tracked files
(what a clone has: no ``data/``, no ``.venv``) to a fresh directory, runs the README's
command there with none of our settings in the environment, waits for the demo to finish,
sends SIGINT to the whole process group — what a terminal's Ctrl-C does — and expects the
20 demo images on disk, exit status 0, every process stopped in order, and no traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from imagequeue_common.embedded_redis import answers
from tests.support.procs import ROOT, uv_command

pytestmark = pytest.mark.slow

OURS = ("REDIS_", "QUEUE_", "AI_", "DATABASE_", "ASSETS_", "STUB_", "API_", "METRICS_",
        "ADMIN_", "DATA_DIR", "LOG_", "RATE_LIMIT_", "WORKER_", "USER_", "JOB_", "VIRTUAL_ENV",
        "UV_PROJECT_ENVIRONMENT", "PYTHONPATH")  # fmt: skip


def fresh_checkout(into: Path) -> Path:
    """The repository's tracked files as they are in the work tree, nothing else."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


class Output:
    """A child's combined output, read by a thread, waited on line by line."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, pattern: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not any(re.search(pattern, line) for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    why = "the output ended" if left > 0 else f"{timeout_s} s passed"
                    pytest.fail(f"no line matching {pattern!r} before {why}:\n{self.text}")
                self._changed.wait(min(left, 1))

    def close(self) -> None:
        self._thread.join(10)
        if self._process.stdout is not None:
            self._process.stdout.close()

    @property
    def text(self) -> str:
        return "".join(self.lines)


def test_uv_run_just_up_as_the_readme_writes_it(tmp_path: Path) -> None:
    if answers("127.0.0.1", 8088, timeout=0.2):
        pytest.fail("something already listens on 127.0.0.1:8088, the port `just up` uses")
    checkout = fresh_checkout(tmp_path / "imagequeue")
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    up = subprocess.Popen(
        [*uv_command(), "run", "just", "up"], cwd=checkout, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    output = Output(up)
    try:
        output.wait_for(r"\[imagequeue\] ETA at creation", timeout_s=240)
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
        code = up.wait(timeout=120)
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
        output.close()
    text = output.text
    assert code == 0, text
    assert "Traceback" not in text, text
    assert "demo finished" in text
    assert "20 completed" in text
    order = ["SIGINT: stopping", "stopping the API", "stopping the worker",
             "stopping the scheduler", "stopping the stub AI server",
             "[imagequeue] stopped"]  # fmt: skip
    if "started a private redis-server" in text:  # no Redis answered on 127.0.0.1:6379
        order.insert(-1, "stopped the private redis-server")
    positions = [text.find(line) for line in order]
    assert -1 not in positions, text
    assert positions == sorted(positions), text
    images = list((checkout / "data" / "assets" / "characters").glob("demo_character_*.png"))
    assert len(images) == 20
    assert all(image.read_bytes().startswith(b"\x89PNG") for image in images)
