"""``python -m loadtest.run --webhooks``, scaled down: every character asks for its
``completed`` by webhook; a receiver process verifies each request with the
``standardwebhooks`` package, and check 8 holds every completed job heard once by
``webhook-id``, with the delivery latency from the job's finish in the JSON line."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.stack import on_redis, queue_keys
from tests.loadtest.scaled import run_scaled

USERS = 60


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_scaled_down_load_test_with_webhooks(tmp_path: Path, redis_url: str) -> None:
    summary, output = run_scaled(tmp_path, redis_url, "1234568", "--users", str(USERS),
                                 "--webhooks")  # fmt: skip
    assert "PASS 8 webhooks" in output, output
    hooks = summary["webhooks"]
    assert hooks["completed_jobs"] == hooks["jobs_heard"] == summary["characters"] == USERS
    assert hooks["completed_unique"] == USERS, output
    assert hooks["unverified"] == 0
    assert 0 < hooks["latency_ms_p50"] <= hooks["latency_ms_p99"], output
    assert on_redis(redis_url, lambda client: queue_keys(client, summary["queue"])) == []
