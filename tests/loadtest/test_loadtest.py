"""The load test end to end, scaled down: ``python -m loadtest.run`` as ``just loadtest`` runs it.

150 users at 25/s against 2 workers x 5 slots and the seed's 10 starts/s, the stub at
0.15-0.3 s per image (latency scale 0.005): about 15 s of drain, with the same checks as
the full run (the ETA's only reported). It uses the session's Redis as a given
``REDIS_URL``, so it also shows that a run on a shared Redis keeps to its own queue and
leaves none of its keys behind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.stack import on_redis, queue_keys
from tests.loadtest.scaled import run_scaled

USERS = 150
REPORT_FILES = (
    "locust.html",
    "locust_stats.csv",
    "locust_stats_history.csv",
    "locust_failures.csv",
    "report.html",
    "summary.json",
    "results.json",
    "samples.json",
)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_scaled_down_load_test_passes_every_check(tmp_path: Path, redis_url: str) -> None:
    # Check 6 (the ETA) is only reported: at 0.15-0.3 s per image the API's and the claim's
    # own milliseconds are a large part of every job's time.
    summary, _ = run_scaled(tmp_path, redis_url, 6, "--users", str(USERS))
    assert summary["characters"] == USERS
    assert summary["one_image_each"] is True
    assert summary["stub_submissions"] == USERS
    (report_dir,) = tmp_path.iterdir()
    for name in REPORT_FILES:
        assert (report_dir / name).stat().st_size > 0, name
    page = (report_dir / "report.html").read_text()
    assert page.count("<svg") == 4
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no CDN
    assert on_redis(redis_url, lambda client: queue_keys(client, summary["queue"])) == []
