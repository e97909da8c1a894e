"""The flood scenario end to end, scaled down: ``python -m loadtest.run --scenario flood``.

50 users at 25/s, 3 of them flooders that queue 30 characters each in their first 3 s (137
jobs), against 2 workers x 5 slots and the seed's 10 starts/s, the stub at 0.15-0.3 s per
image (latency scale 0.005): about 14 s of drain. Under FIFO the single-job users arriving
in the first seconds would wait behind the 90 flood jobs; under fair share they wait for
one turn of each user waiting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.stack import on_redis, queue_keys
from tests.support.procs import ROOT

USERS, FLOODERS, FLOOD_JOBS = 50, 3, 30
JOBS = USERS - FLOODERS + FLOODERS * FLOOD_JOBS
BUSY_P95_MS = 500  # the check's own target is 200 ms
BUSY_DRAIN_RATIO = 1.15  # the check's own bound is 1.05
BUSY_WAIT_VS_BOUND = 1.25  # check 7's own bound is 1


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_scaled_down_flood_holds_the_fair_share(tmp_path: Path, redis_url: str) -> None:
    command = [
        sys.executable, "-m", "loadtest.run", "--scenario", "flood", "--users", str(USERS),
        "--flooders", str(FLOODERS), "--flood-jobs", str(FLOOD_JOBS), "--spawn-rate", "25",
        "--latency-scale", "0.005", "--workers", "2", "--max-duration", "90",
        "--out", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, "REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=140, check=False
    )
    output = f"{run.stdout[-5000:]}\n{run.stderr[-2000:]}"
    lines = run.stdout.splitlines()
    verdicts = [line.split()[:2] for line in lines if line.startswith(("PASS ", "FAIL "))]
    # As in test_loadtest: checks 1, 3 and 4 exactly, the timing checks 2, 5 and 7 with a
    # margin (this is a busy 2-core machine), the ETA (6) only reported.
    assert [v for v in verdicts if v[1] in "134"] == [["PASS", n] for n in "134"], output
    assert [v[1] for v in verdicts] == [str(n) for n in range(1, 8)], output
    passed = sum(v[0] == "PASS" for v in verdicts)
    assert run.returncode == (0 if passed == 7 else 1), output
    summary = json.loads(lines[-1])
    assert summary["api_p95_ms"] < BUSY_P95_MS, output
    assert summary["drain_vs_physical_limit"] <= BUSY_DRAIN_RATIO, output
    assert summary["characters"] == summary["stub_submissions"] == JOBS, output
    assert summary["one_image_each"] is True
    fair = summary["fair_share"]
    assert fair["single_job_users"] == USERS - FLOODERS, output
    assert fair["wait_vs_bound_max"] <= BUSY_WAIT_VS_BOUND, output
    # The order itself, which no busy machine changes: no later arrival went first, and no
    # one waited for more than one job of each user waiting on its arrival, bar the rest of
    # the turn in progress (at most one job more of each flooder).
    assert fair["overtaken_by_later"] == 0, output
    assert fair["ahead_beyond_one_turn_max"] <= FLOODERS, output
    assert 0 < summary["jain_index"] <= 1, output
    (report_dir,) = tmp_path.iterdir()
    for name in ("report.html", "summary.json", "results.json", "jobs.json"):
        assert (report_dir / name).stat().st_size > 0, name
    page = (report_dir / "report.html").read_text()
    assert page.count("<svg") == 5  # the four charts and the waits against the bound
    assert "jain_index" in page
    assert on_redis(redis_url, lambda client: queue_keys(client, summary["queue"])) == []
