"""``imagequeue-api serve`` stops like a service: SIGINT (Ctrl-C) or SIGTERM → exit 0, no
traceback, with one process or several, and a doubled SIGINT (Ctrl-C under ``uv run``)
does not cut the graceful stop short."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from imagequeue_common.embedded_redis import free_port
from imagequeue_common.settings import Settings
from tests.support.api import ApiServer
from tests.support.procs import ROOT, uv_command, worker_env

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("signum", "processes", "twice"),
    [
        (signal.SIGINT, 1, False),
        (signal.SIGTERM, 1, False),
        (signal.SIGINT, 1, True),
        (signal.SIGINT, 2, True),
        (signal.SIGTERM, 2, False),
    ],
)
async def test_a_signal_stops_the_api_with_exit_0(
    settings: Settings, redis: Redis, tmp_path: Path, signum: int, processes: int, twice: bool
) -> None:
    del redis  # cleans this test's keys afterwards
    env = worker_env(settings, api_processes=processes,
                     database_url=f"sqlite:///{tmp_path}/api.db")  # fmt: skip
    server = ApiServer(env, tmp_path / "api.log").start()
    if processes > 1:
        server.wait_log(f"all {processes} API processes ready")
    assert server.proc is not None
    if twice:
        server.proc.send_signal(signum)  # the terminal's copy; stop() sends uv's
    code = server.stop(signum)
    log = (tmp_path / "api.log").read_text(errors="replace")
    assert code == 0, log
    assert "Traceback" not in log, log
    assert "Application shutdown complete" in log


@pytest.mark.parametrize("recipe", ["scheduler", "api"])
def test_ctrl_c_on_a_just_recipe_exits_0(settings: Settings, tmp_path: Path, recipe: str) -> None:
    """``uv run just <recipe>`` and Ctrl-C: the signal reaches uv, just, uv and the process,
    and the recipe still ends with the process's own status, 0."""
    env = {**os.environ, **worker_env(settings, database_url=f"sqlite:///{tmp_path}/api.db"),
           "API_PORT": str(free_port())}  # fmt: skip
    ready = "Application startup complete" if recipe == "api" else "Startup completed"
    process = subprocess.Popen(
        [*uv_command(), "run", "just", recipe], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if ready in line:
            os.killpg(process.pid, signal.SIGINT)
    process.stdout.close()
    code = process.wait(30)
    text = "".join(lines)
    assert any(ready in line for line in lines), text
    assert code == 0, text
    assert "Traceback" not in text, text


@pytest.mark.parametrize("command", [["imagequeue_api", "serve"], ["imagequeue_api.devstack"]])
def test_a_port_in_use_is_one_line_and_nothing_starts(
    settings: Settings, tmp_path: Path, command: list[str]
) -> None:
    """Something (here another API) already answers on API_PORT: exit 2 with one line.
    Binding alone would succeed — our sockets use SO_REUSEPORT — and share the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, **worker_env(settings, database_url=f"sqlite:///{tmp_path}/a.db")}
        env |= {"API_PORT": str(port), "DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-m", *command], env=env, cwd=ROOT, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
    text = done.stdout + done.stderr
    assert done.returncode == 2, text
    assert f"127.0.0.1:{port} is in use already" in text
    assert "Traceback" not in text
    assert "started" not in text  # no Redis, stub or process was started
