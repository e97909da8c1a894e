"""A scaled-down ``python -m loadtest.run`` as ``just loadtest`` runs it, and how its
verdicts are held on this busy 2-core machine: the correctness checks (1 no failures, 3 the
rate limit, 4 one image each) exactly, the timing ones with a margin.

Quiet runs pass the timing checks with room (p95 36-53 ms, drain ratio 0.98-1.00); a busy
one gave p95 200 ms and 1.051 (CI, 2026-12-02), so they are held to wider bounds here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

from tests.support.procs import ROOT

BUSY_P95_MS = 500  # check 2's own target is 200 ms
BUSY_DRAIN_RATIO = 1.15  # check 5's own bound is 1.05
EXACT = "134"


class Scaled(NamedTuple):
    """What a scaled-down run printed."""

    summary: dict[str, Any]
    """Its JSON line."""
    output: str
    """The tail of its output, for assertion messages."""


def run_scaled(tmp_path: Path, redis_url: str, checks: int | str, *args: str) -> Scaled:
    """Run the load test with ``args`` (150 s at most) on ``redis_url``; assert its
    ``checks`` verdicts (1 to ``checks``, or the numbers a string lists) are printed,
    the exact ones pass, its exit status matches them and the timing ones stay within the
    busy machine's bounds."""
    command = [
        sys.executable, "-m", "loadtest.run", "--spawn-rate", "25", "--latency-scale", "0.005",
        "--workers", "2", "--max-duration", "90", "--out", str(tmp_path), *args,
    ]  # fmt: skip
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=140, check=False
    )
    output = f"{run.stdout[-5000:]}\n{run.stderr[-2000:]}"
    lines = run.stdout.splitlines()
    verdicts = [line.split()[:2] for line in lines if line.startswith(("PASS ", "FAIL "))]
    numbers = list(checks) if isinstance(checks, str) else [str(n) for n in range(1, checks + 1)]
    assert [v[1] for v in verdicts] == numbers, output
    assert [v for v in verdicts if v[1] in EXACT] == [["PASS", n] for n in EXACT], output
    passed = sum(v[0] == "PASS" for v in verdicts)
    assert run.returncode == (0 if passed == len(numbers) else 1), output
    summary: dict[str, Any] = json.loads(lines[-1])
    assert summary["api_p95_ms"] < BUSY_P95_MS, output
    assert summary["drain_vs_physical_limit"] <= BUSY_DRAIN_RATIO, output
    return Scaled(summary, output)
