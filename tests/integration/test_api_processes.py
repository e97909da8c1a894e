"""``imagequeue-api serve`` with several processes: each on its own SO_REUSEPORT socket, so
connections spread over all of them; a dead process is replaced; one that cannot start stops
the server."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from imagequeue_common.embedded_redis import free_port
from imagequeue_common.settings import Settings, replace
from tests.support.api import ApiServer
from tests.support.procs import ROOT, wait_until, worker_env

pytestmark = pytest.mark.slow


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    settings = replace(settings, database_url=f"sqlite:///{tmp_path}/api.db",
                       assets_dir=str(tmp_path / "assets"))  # fmt: skip
    return worker_env(settings, api_processes=2)


@pytest.fixture
def api(env: dict[str, str], tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(env, tmp_path / "api.log").start()
    server.wait_log("all 2 API processes ready")
    yield server
    server.stop()


def api_processes(server: ApiServer) -> list[psutil.Process]:
    assert server.proc is not None
    found = []
    for p in psutil.Process(server.proc.pid).children():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(
                p.cmdline()
            ):
                found.append(p)
        except psutil.Error:  # gone (or a zombie) between listing and looking
            continue
    return found


def connections_to(process: psutil.Process, port: int) -> int:
    established = psutil.CONN_ESTABLISHED
    return sum(1 for c in process.net_connections("tcp")
               if c.laddr and c.laddr.port == port and c.status == established)  # fmt: skip


def test_connections_spread_over_every_process(api: ApiServer) -> None:
    request = f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n\r\n".encode()
    # A burst, as a load generator opens its connections: all connect before any is served.
    held = [socket.create_connection(("127.0.0.1", api.port), timeout=5) for _ in range(60)]
    for conn in held:
        conn.sendall(request)
    for conn in held:
        assert conn.recv(100).startswith(b"HTTP/1.1 200")
    try:
        counts = [connections_to(p, api.port) for p in api_processes(api)]
        assert len(counts) == 2
        assert sum(counts) == 60
        assert min(counts) >= 10, counts
    finally:
        for conn in held:
            conn.close()


async def test_a_killed_process_is_replaced(api: ApiServer) -> None:
    first = api_processes(api)
    os.kill(first[0].pid, signal.SIGKILL)

    async def replaced() -> bool:
        now = api_processes(api)
        return len(now) == 2 and first[0].pid not in {p.pid for p in now}

    await wait_until(replaced, 30, "a new API process in place of the killed one")
    api.wait_log("exited (-9); starting another")


def test_a_process_that_cannot_start_stops_the_server(env: dict[str, str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    bad = {**os.environ, **env, "DATABASE_URL": f"sqlite:///{blocker}/sub/api.db",
           "API_PORT": str(free_port()), "PYTHONPATH": str(ROOT)}  # fmt: skip
    done = subprocess.run([sys.executable, "-m", "imagequeue_api", "serve"], env=bad, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 3, done.stderr[-2000:]
    assert "an API process could not start; stopping" in done.stderr
