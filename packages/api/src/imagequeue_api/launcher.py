"""The processes that launched ``just up``, watched so that the stack never outlives them.

``uv run just up`` is three processes in one group: ``uv``, ``just`` and us. A terminal's
Ctrl-C reaches all three, and SIGTERM to ``uv`` is passed down; but a SIGKILL to ``uv`` (a
process manager giving up, a test runner's timeout) leaves ``just`` and the stack running
with nobody left to stop them, still holding port 8088. So the stack watches every ancestor
in its own process group, up to the group's leader, and stops when one of them ends.

A SIGINT sent to ``uv``'s pid alone (a script's ``kill -INT``, a supervisor without a
terminal) goes no further by itself: ``uv`` passes it to ``just``, and ``just`` ignores
SIGINT, SIGHUP and SIGQUIT while its recipe runs, expecting the recipe to have had them from
the terminal too. But ``just`` reads every signal it catches on a thread of its own, named
``signal handler``, which sleeps otherwise: each signal wakes it once, and the kernel counts
the wake-ups (``voluntary_ctxt_switches`` in ``/proc/<pid>/task/<tid>/status``). So the
stack watches that count (:class:`SignalsCaught`) and treats a rise as the stop ``just``
did not pass on. A ``just`` without such a thread leaves the watch out: the README's
SIGTERM and process-group signals still stop the stack.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Launcher:
    """One process that launched us: its pid, its name and a pidfd that becomes readable
    when it ends."""

    pid: int
    name: str
    fd: int


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(name, parent pid, process group)`` from ``/proc/<pid>/stat``; None when gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.find("(") + 1 : text.rfind(")")]
    fields = text[text.rfind(")") + 2 :].split()
    return name, int(fields[1]), int(fields[2])


def launchers() -> list[Launcher]:
    """Our ancestors in our own process group, nearest first, each with a pidfd (Linux).

    Empty when we lead our group (started from an interactive shell, which gives each job a
    group of its own) or where pidfds are not available.
    """
    if not hasattr(os, "pidfd_open"):
        return []
    group = os.getpgrp()
    found: list[Launcher] = []
    pid = os.getppid()
    while pid > 1 and os.getpid() != group:
        stat = _stat(pid)
        if stat is None or stat[2] != group:
            break
        try:
            found.append(Launcher(pid, stat[0], os.pidfd_open(pid)))
        except OSError:  # ended meanwhile, or no pidfds in this kernel
            break
        if pid == group:  # the leader: above it is whoever started the group
            break
        pid = stat[1]
    return found


def close(found: list[Launcher]) -> None:
    """Close the pidfds."""
    for launcher in found:
        os.close(launcher.fd)


SIGNAL_THREAD = "signal handler"  # the name just gives the thread that reads its signals


@dataclass(slots=True)
class SignalsCaught:
    """How many signals a ``just`` has caught so far: its signal thread's wake-up count."""

    pid: int
    status: Path
    count: int

    @classmethod
    def of(cls, pid: int) -> SignalsCaught | None:
        """The count for ``just`` at ``pid`` now; None without a signal thread (or gone)."""
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                if (task / "comm").read_text().strip() == SIGNAL_THREAD:
                    count = _wakeups(task / "status")
                    return None if count is None else cls(pid, task / "status", count)
        except OSError:
            pass
        return None

    def rose(self) -> bool:
        """True when it caught a signal since the last look (not when it ended)."""
        count = _wakeups(self.status)
        if count is None or count == self.count:
            return False
        self.count = count
        return True


def _wakeups(status: Path) -> int | None:
    try:
        text = status.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("voluntary_ctxt_switches:"):
            return int(line.split()[1])
    return None
