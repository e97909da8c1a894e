"""API benchmark: ``POST /api/v1/characters`` at 1000 concurrent connections, one JSON line.

The load comes from ``wrk`` (Debian's package; installed with apt-get when missing and
root), a separate C process, not the API's own: the API runs as ``imagequeue-api serve``
with ``API_PROCESSES`` processes on a private Redis and SQLite. Every request is a real
character creation: a database insert and a job queued in Redis (no worker runs, so jobs
wait; the per-user limits are off so one key can drive the load).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.engine import ROOT
from imagequeue_common.embedded_redis import EmbeddedRedis, free_port

DEV_KEY = "bench-api-key-0123456789"
LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
counter = 0
request = function()
  counter = counter + 1
  local body = '{"name":"Bench ' .. counter .. '","personality":{"poseId":"pose-standing"}}'
  return wrk.format(nil, nil, nil, body)
end
"""


def ensure_wrk() -> str:
    """``wrk`` on PATH, installed from Debian's packages when missing (as root)."""
    found = shutil.which("wrk")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False,
                       capture_output=True)  # fmt: skip
        found = shutil.which("wrk")
    if found is None:
        sys.exit("bench-api needs wrk (apt-get install wrk)")
    return found


def to_ms(text: str) -> float:
    """wrk's ``12.34ms`` / ``1.20s`` / ``850.00us`` in milliseconds."""
    value, unit = float(re.sub(r"[a-z]+$", "", text)), re.sub(r"^[0-9.]+", "", text)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse(out: str) -> dict[str, float]:
    """Requests/s, p50, p99 and errors from ``wrk --latency`` output."""
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    return {"requests_per_s": round(rate, 1), "p50_ms": round(p50, 1), "p99_ms": round(p99, 1),
            "errors": errors}  # fmt: skip


def main() -> None:
    """Start Redis and the API, run wrk, print one JSON line."""
    parser = argparse.ArgumentParser(prog="just bench-api")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--duration", default="20s")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--api-processes", type=int, default=2)
    args = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp:
        redis = EmbeddedRedis(Path(tmp) / "redis")
        url = redis.start()
        port = free_port()
        env = {**os.environ, "REDIS_URL": url, "API_PORT": str(port), "API_DEV_KEY": DEV_KEY,
               "API_PROCESSES": str(args.api_processes), "DATABASE_URL": f"sqlite:///{tmp}/b.db",
               "ASSETS_DIR": f"{tmp}/assets", "USER_MAX_PENDING": "0", "API_USER_RPS": "0",
               "AI_GENERATION_API_URL": "http://127.0.0.1:9/unused",
               "PYTHONPATH": str(ROOT)}  # fmt: skip
        api = subprocess.Popen([sys.executable, "-m", "imagequeue_api", "serve"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            _wait_ready(port)
            script = Path(tmp) / "post.lua"
            script.write_text(LUA % DEV_KEY)
            done = subprocess.run(
                [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", args.duration,
                 "--timeout", "10s", "--latency", "-s", str(script),
                 f"http://127.0.0.1:{port}/api/v1/characters"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
        finally:
            api.terminate()
            api.wait(30)
            redis.stop()
    line = {"bench": "api", "route": "POST /api/v1/characters",
            "connections": args.connections, **parse(done.stdout),
            "api_processes": args.api_processes, "load_generator": "wrk",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}"}  # fmt: skip
    print(json.dumps(line))


def _wait_ready(port: int) -> None:
    import time  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit("the API did not become ready")


if __name__ == "__main__":
    main()
