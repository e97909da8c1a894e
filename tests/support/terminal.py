"""A real terminal for a command under test: a pseudo-terminal that is the command's
controlling terminal, so a Ctrl-C typed into it is turned into SIGINT for the whole
foreground process group by the kernel's line discipline, exactly as in a terminal window,
and closing it hangs the session up (SIGHUP) as closing the window does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

CTRL_C = b"\x03"


def _become_terminal_owner() -> None:
    """In the child before exec: a session of its own, with the pty (its stdin) as the
    controlling terminal, its process group the foreground one."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``command`` running in a pseudo-terminal; its output read by a thread."""

    def __init__(self, command: Sequence[str], cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self._master, slave = os.openpty()
        self.process = subprocess.Popen(
            list(command), cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
            preexec_fn=_become_terminal_owner,  # noqa: PLW1509 - one ioctl before exec
        )  # fmt: skip
        os.close(slave)
        self._chunks: list[str] = []
        self._changed = threading.Condition()
        self._open = True
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        # The terminal is closed here, by its reader: a close from another thread while a
        # read is blocked would not release it, and the hang-up would never happen.
        chunk = b"..."
        while chunk and not self._closing.is_set():
            if not select.select([self._master], [], [], 0.2)[0]:
                continue
            try:
                chunk = os.read(self._master, 65536)
            except OSError:  # EIO: every process let go of the terminal
                chunk = b""
            with self._changed:
                self._chunks.append(chunk.decode(errors="replace"))
                self._changed.notify_all()
        os.close(self._master)
        with self._changed:
            self._open = False
            self._changed.notify_all()

    @property
    def text(self) -> str:
        """Everything shown so far, with the line discipline's CR LF made LF."""
        with self._changed:
            return "".join(self._chunks).replace("\r\n", "\n")

    def wait_for(self, pattern: str, timeout_s: float) -> None:
        """Until ``pattern`` has been shown; fails the test with the output otherwise."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not re.search(pattern, "".join(self._chunks)):
                left = deadline - time.monotonic()
                if left <= 0 or not self._open:
                    why = "the output ended" if left > 0 else f"{timeout_s} s passed"
                    pytest.fail(f"no output matching {pattern!r} before {why}:\n{self.text}")
                self._changed.wait(min(left, 1))

    def press_ctrl_c(self) -> None:
        """Type Ctrl-C, as a person at the keyboard does."""
        with self._changed:
            if self._open:
                os.write(self._master, CTRL_C)

    def hang_up(self) -> None:
        """Close the terminal, as closing its window does (the kernel sends SIGHUP)."""
        self._closing.set()
        self._thread.join(10)

    def close(self) -> None:
        """Kill what still runs there (children in sessions of their own too), then close
        the terminal."""
        for pid in processes_in(self.cwd):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process.wait()
        self.hang_up()


def processes_in(directory: Path) -> list[int]:
    """Processes whose working directory is ``directory`` (what a stack started there left)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if Path(os.readlink(entry / "cwd")) == directory:
                found.append(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to look at
            continue
    return found
