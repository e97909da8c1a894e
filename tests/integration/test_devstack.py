"""`just up` on a machine with nothing configured: private Redis, stub AI, API, worker,
scheduler, and a demo that goes through the API."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imagequeue_common.embedded_redis import free_port
from tests.support.procs import ROOT


def test_up_runs_the_whole_stack_and_drains_the_demo(tmp_path: Path) -> None:
    mine = ("REDIS_", "QUEUE_", "AI_", "DATABASE_", "ASSETS_", "STUB_", "API_", "METRICS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
    env |= {"DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT), "API_PORT": str(free_port())}
    done = subprocess.run(
        [sys.executable, "-m", "imagequeue_api.devstack",
         "--private-redis", "--demo-jobs", "6", "--exit-when-done"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "started a private redis-server" in out
    assert "started the stub AI server" in out
    key = (tmp_path / "dev-api-key").read_text().strip()
    assert f"development key (premium user 'dev'): {key}" in out
    password = (tmp_path / "dev-admin-password").read_text().strip()
    assert f"/admin/queues (login admin / {password})" in out
    secret = (tmp_path / "dev-webhook-secret").read_text().strip()
    assert secret.startswith("whsec_")
    assert f"its webhook secret (signs its webhooks): {secret}" in out
    assert "queued 6 demo jobs" in out
    assert "waiting=0 active=0 completed=6 failed=0 delayed=0 total=6" in out
    assert "stopped the private redis-server" in out
    assert (tmp_path / "redis" / "redis.log").exists()
    images = sorted((tmp_path / "assets" / "characters").glob("demo_character_*.png"))
    assert len(images) == 6
    assert all(image.read_bytes().startswith(b"\x89PNG") for image in images)
    assert "Demo Character 0: /assets/characters/demo_character_0_" in out
    assert (tmp_path / "imagequeue.db").exists()


def test_ctrl_c_mid_demo_lets_running_jobs_finish_and_exits_0(tmp_path: Path) -> None:
    """Ctrl-C while the demo's jobs run: every job that had started finishes and is saved
    before the worker exits, then the stub and Redis stop; exit 0, no traceback."""
    mine = ("REDIS_", "QUEUE_", "AI_", "DATABASE_", "ASSETS_", "STUB_", "API_", "METRICS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(mine)}
    env |= {"DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT), "API_PORT": str(free_port())}
    up = subprocess.Popen(
        [sys.executable, "-m", "imagequeue_api.devstack", "--private-redis", "--demo-jobs", "8"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert up.stdout is not None
    lines = []
    for line in up.stdout:
        lines.append(line)
        if "queued 8 demo jobs" in line:
            os.killpg(up.pid, signal.SIGINT)
    up.stdout.close()
    code = up.wait(60)
    out = "".join(lines)
    assert code == 0, out
    assert "Traceback" not in out, out
    started = set(re.findall(r"Processing image generation job (\S+)", out))
    finished = set(re.findall(r"✓ Job (\S+) completed for character", out))
    assert started, out  # the signal came while jobs ran
    assert started == finished, out
    images = list((tmp_path / "assets" / "characters").glob("demo_character_*.png"))
    assert len(images) == len(finished)
    assert out.index("stopping the stub AI server") < out.index("stopped the private redis")


@pytest.mark.parametrize("after_s", [0.05, 0.3])
def test_ctrl_c_while_just_up_still_loads_is_quiet(tmp_path: Path, after_s: float) -> None:
    """Ctrl-C in the first moments, while Python still imports the modules: exit 0, no
    traceback, nothing left running."""
    env = {**os.environ, "DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT),
           "API_PORT": str(free_port())}  # fmt: skip
    up = subprocess.Popen(
        [sys.executable, "-m", "imagequeue_api.up", "--private-redis"], env=env, cwd=ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    time.sleep(after_s)  # a moment in start-up, not a wait for something to happen
    os.killpg(up.pid, signal.SIGINT)
    out, _ = up.communicate(timeout=60)
    assert up.returncode == 0, out
    assert "Traceback" not in out, out
    assert out.strip().endswith(("stopped before anything had started", "stopped")), out
