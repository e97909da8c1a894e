"""The processes that launched ``just up``, watched so that the stack never outlives them.

``uv run just up`` is three processes in one group: ``uv``, ``just`` and us. A terminal's
Ctrl-C reaches all three, and SIGTERM to ``uv`` is passed down; but a SIGKILL to ``uv`` (a
process manager giving up, a test runner's timeout) leaves ``just`` and the stack running
with nobody left to stop them, still holding port 8088. So the stack watches every ancestor
in its own process group, up to the group's leader, and stops when one of them ends.

A SIGINT sent to ``uv``'s pid alone cannot be seen here: ``uv`` passes it to ``just``, and
``just`` ignores SIGINT while its recipe runs, expecting the recipe to have had it from the
terminal too (both by design, see the README). That is why the README says to signal the
group, or to send SIGTERM.
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
