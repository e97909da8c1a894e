"""The benchmarks' child processes: waited for until they say they are ready, and stopped
gracefully (then killed, should they hang)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def wait_for_line(log: Path, text: str, proc: subprocess.Popen[bytes], what: str) -> None:
    """Until ``proc``'s output (in ``log``) says ``text``; exits with its output when it
    died or a minute passed."""
    deadline = time.monotonic() + 60
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{what} did not become ready:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes], *, group: bool = False,
         signum: int = signal.SIGTERM, timeout_s: float = 60) -> None:  # fmt: skip
    """``signum`` to the process (its whole group with ``group``), SIGKILL when it has not
    ended after ``timeout_s``."""
    if proc.poll() is not None:
        return
    send = (lambda s: os.killpg(proc.pid, s)) if group else proc.send_signal
    send(signum)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        proc.wait()
