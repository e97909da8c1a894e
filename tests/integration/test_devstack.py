"""`just up` on a machine with nothing configured: private Redis, worker, scheduler, demo."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.procs import ROOT


def test_up_runs_the_whole_stack_and_drains_the_demo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "QUEUE_"))}
    env |= {"DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "imagequeue_common.devstack",
         "--private-redis", "--demo-jobs", "6", "--exit-when-done"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "started a private redis-server" in out
    assert "queued 6 demo jobs" in out
    assert "waiting=0 active=0 completed=6 failed=0 delayed=0 total=6" in out
    assert "stopped the private redis-server" in out
    assert (tmp_path / "redis" / "redis.log").exists()
