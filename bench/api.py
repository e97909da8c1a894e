"""API benchmark: ``POST /api/v1/characters`` at 1000 concurrent connections, one JSON line.

The API runs as ``imagequeue-api serve`` with ``API_PROCESSES`` processes on a private Redis
and SQLite, and the load comes from separate C programs from Debian's packages (installed
with apt-get when missing and root). Every request is a real character creation: a real API
key looked up, the per-user rate and quota and the queue's length checked (``LIMITS``: at
values the one key never reaches), a database insert and a job queued in Redis (no worker
runs, so jobs wait). Beside ours, alternately, the peer (``bench/peers/api.js``: Fastify +
BullMQ doing the same work, on its own private Redis and SQLite) under the same load; the
line has both and their ratio (``vs_peer``). Two phases, each on 1000 connections:

- **saturation** (``wrk``, closed loop: each connection sends its next request when the
  last is answered): the most requests per second the API serves — ``requests_per_s``.
  Latency here is only queueing: with 1000 connections always waiting, the mean is 1000 ÷
  the rate (Little's law), so it says nothing a user would see below saturation.
- **paced** (``h2load --rps``): the same connections offering a fixed total rate
  (default 2000/s, the issue's figure); ``p50_ms``/``p99_ms`` are the latencies at that
  load, from h2load's per-request log, the first 2 s (connection set-up) left out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.engine import ROOT
from bench.peers import make_key, peer_created, peer_server
from bench.procs import stop, wait_for_line
from imagequeue_common.embedded_redis import EmbeddedRedis, free_port
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.redis_conn import command_client
from imagequeue_common.settings import Settings

DEV_KEY = "bench-api-key-0123456789"
"""A key for tools that call the API with limits off (schemathesis, bench-logins)."""
LIMITS = {
    "API_USER_RPS": "10000000",
    "USER_MAX_PENDING": "100000000",
    "MAX_QUEUE_LENGTH": "100000000",
}
"""Every per-user and queue limit is checked on each request (real work, as in production),
at values one key driving the whole load never reaches."""
WARMUP_S = 2
STAGGER_PERIOD_S = 0.01
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


def ensure_tool(command: str, package: str) -> str:
    """``command`` on PATH, installed from Debian's ``package`` when missing (as root)."""
    found = shutil.which(command)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=False,
                       capture_output=True)  # fmt: skip
        found = shutil.which(command)
    if found is None:
        sys.exit(f"bench-api needs {command} (apt-get install {package})")
    return found


def to_ms(text: str) -> float:
    """wrk's ``12.34ms`` / ``1.20s`` / ``850.00us`` in milliseconds."""
    value, unit = float(re.sub(r"[a-z]+$", "", text)), re.sub(r"^[0-9.]+", "", text)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(out: str) -> dict[str, float]:
    """Requests/s, p50, p99, errors and requests done from ``wrk --latency`` output."""
    rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))  # type: ignore[union-attr]
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = to_ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = to_ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = 0
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(g) for g in sock.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx.group(1))
    return {"requests_per_s": round(rate, 1), "saturated_p50_ms": round(p50, 1),
            "saturated_p99_ms": round(p99, 1), "saturated_errors": errors,
            "saturated_requests": done}  # fmt: skip


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of sorted ``values``, nearest rank."""
    return values[min(len(values) - 1, max(0, math.ceil(q * len(values)) - 1))]


def parse_h2load(log: Path, out: str) -> dict[str, float]:
    """Latency percentiles, achieved rate and errors from h2load's per-request log (rows:
    start µs, status, µs to the end of the response), the first ``WARMUP_S`` left out."""
    rows = [line.split("\t") for line in log.read_text().splitlines() if line.strip()]
    begin = min(int(r[0]) for r in rows) + WARMUP_S * 1e6
    kept = [r for r in rows if int(r[0]) >= begin]
    ms = sorted(int(r[2]) / 1000 for r in kept)
    bad = sum(1 for r in kept if r[1] != "201")
    failed = re.search(r"requests: .*? (\d+) failed, (\d+) errored, (\d+) timeout", out)
    lost = sum(int(g) for g in failed.groups()) if failed else 0
    return {"p50_ms": round(percentile(ms, 0.50), 1), "p99_ms": round(percentile(ms, 0.99), 1),
            "paced_achieved_rps": round(len(kept) / _span_s(kept), 1),
            "errors": bad + lost}  # fmt: skip


def _span_s(rows: list[list[str]]) -> float:
    """Seconds from the first request start to the last one's end."""
    first = min(int(r[0]) for r in rows)
    last = max(int(r[0]) + int(r[2]) for r in rows)
    return (last - first) / 1e6


def run_wrk(url: str, key: str, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    """The saturation phase."""
    wrk = ensure_tool("wrk", "wrk")
    script = tmp / "post.lua"
    script.write_text(LUA % key)
    done = subprocess.run(
        [wrk, "-t", str(args.threads), "-c", str(args.connections), "-d", f"{args.duration}s",
         "--timeout", "10s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return parse_wrk(done.stdout)


def run_h2load(url: str, key: str, tmp: Path, args: argparse.Namespace) -> dict[str, float]:
    """The paced phase: ``args.paced_rps`` in all, spread evenly over the connections."""
    h2load = ensure_tool("h2load", "nghttp2-client")
    body = tmp / "body.json"
    body.write_text('{"name":"Bench","personality":{"poseId":"pose-standing"}}')
    log = tmp / "h2load.log"
    per_client = args.paced_rps / args.connections
    # Connections start a few at a time over one pacing interval, so their sends interleave
    # evenly instead of all 1000 firing in the same instant every interval.
    starts_per_period = max(1, math.ceil(args.connections * STAGGER_PERIOD_S * per_client))
    done = subprocess.run(
        [h2load, "--h1", "-c", str(args.connections), "-t", "1", "--rps", f"{per_client:g}",
         "-r", str(starts_per_period), "--rate-period", f"{round(STAGGER_PERIOD_S * 1000)}ms",
         "-n", str(args.paced_rps * args.duration), "-d", str(body), "--log-file", str(log),
         "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json",
         url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return parse_h2load(log, done.stdout)


Phase = Callable[[str, str, Path, argparse.Namespace], dict[str, float]]


def measure(service: str, phase: Phase, args: argparse.Namespace) -> dict[str, float]:
    """One phase against a fresh ``service`` ("ours" or "peer"), its Redis and database;
    exits when its 201s did not each make a character and a queued job."""
    with tempfile.TemporaryDirectory() as tmp:
        serve = api_server if service == "ours" else peer_server
        with serve(Path(tmp), args.api_processes, LIMITS) as (url, redis_url, key, stop):
            figures = phase(f"{url}/api/v1/characters", key, Path(tmp), args)
            stop()  # graceful: requests in flight when the load stopped finish first
            db = Path(tmp) / "b.db"
            made = (asyncio.run(created_counts(db, redis_url)) if service == "ours"
                    else peer_created(db, redis_url))  # fmt: skip
    if made["characters"] != made["queued_jobs"]:
        sys.exit(f"{service} {phase.__name__}: characters and queued jobs differ: {made}")
    return {**figures, f"{phase.__name__.removeprefix('run_')}_created": made["characters"]}


def summary(figures: dict[str, float]) -> dict[str, float]:
    """The headline figures of one service's phases."""
    return {"requests_per_s": figures["requests_per_s"], "p50_ms": figures["p50_ms"],
            "p99_ms": figures["p99_ms"], "errors": figures["errors"] + figures["saturated_errors"],
            "saturated_p99_ms": figures["saturated_p99_ms"]}  # fmt: skip


def main() -> None:
    """Ours and the peer, phase by phase and alternately, one JSON line with both."""
    parser = argparse.ArgumentParser(prog="just bench-api")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=20, help="seconds per phase")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--api-processes", type=int, default=2)
    parser.add_argument("--paced-rps", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=1, help="ours/peer alternations")
    parser.add_argument("--no-peer", action="store_true", help="ours only")
    args = parser.parse_args()
    services = ["ours"] if args.no_peer else ["ours", "peer"]
    runs: dict[str, list[dict[str, float]]] = {s: [] for s in services}
    for n in range(args.rounds):
        order = services if n % 2 == 0 else services[::-1]
        for service in order:
            figures: dict[str, float] = {}
            for phase in (run_wrk, run_h2load):
                figures |= measure(service, phase, args)
            runs[service].append(figures)
    ours = median_of(runs["ours"])
    line: dict[str, object] = {
        "bench": "api", "route": "POST /api/v1/characters", "connections": args.connections,
        **summary(ours), "api_processes": args.api_processes, "paced_rps": args.paced_rps,
        "rounds": args.rounds,
        **{k: v for k, v in ours.items() if k not in summary(ours)},
    }  # fmt: skip
    if not args.no_peer:
        peer = median_of(runs["peer"])
        line["peer"] = {"what": "Fastify 5 + BullMQ 6 (bench/peers/api.js)", **summary(peer),
                        "saturated_requests": peer["saturated_requests"]}  # fmt: skip
        line["vs_peer"] = {k: round(ours[k] / peer[k], 2) if peer[k] else None
                           for k in ("requests_per_s", "p99_ms", "saturated_p99_ms")}  # fmt: skip
    line["load_generators"] = "wrk (saturation), h2load (paced)"
    line["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
                       f"{platform.python_version()}, Node {node_version()}")  # fmt: skip
    print(json.dumps(line))


def median_of(rounds: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds."""
    return {k: round(statistics.median(r[k] for r in rounds), 1) for k in rounds[0]}


def node_version() -> str:
    found = shutil.which("node")
    if found is None:
        return "none"
    return subprocess.run([found, "--version"], capture_output=True, text=True,
                          check=False).stdout.strip()  # fmt: skip


async def created_counts(db: Path, redis_url: str) -> dict[str, int]:
    """Characters in the database and jobs waiting in Redis: every 201 must have made one
    of each (a check that the figures count real work)."""
    with sqlite3.connect(db) as conn:
        characters = int(conn.execute("SELECT COUNT(*) FROM characters").fetchone()[0])
    client = command_client(redis_url)
    try:
        stats = await JobLedger(client, Settings(redis_url=redis_url)).stats()
    finally:
        await client.aclose()
    return {"characters": characters, "queued_jobs": stats.waiting}


@contextlib.contextmanager
def api_server(
    tmp: Path, processes: int, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, str, str, Callable[[], None]]]:
    """``imagequeue-api serve`` on a private Redis and SQLite (and ``extra_env``); its URL,
    Redis's URL, a real API key (a premium user's) and a function stopping the API (Redis
    stays up until the block ends), once every process accepts connections."""
    redis = EmbeddedRedis(tmp / "redis")
    url = redis.start()
    key = asyncio.run(make_key(url))
    port = free_port()
    env = {**os.environ, "REDIS_URL": url, "API_PORT": str(port), "API_DEV_KEY": DEV_KEY,
           "USER_MAX_PENDING": "0", "API_USER_RPS": "0", "API_PROCESSES": str(processes),
           "DATABASE_URL": f"sqlite:///{tmp}/b.db",
           "ASSETS_DIR": f"{tmp}/assets", "AI_GENERATION_API_URL": "http://127.0.0.1:9/unused",
           "PYTHONPATH": str(ROOT), **(extra_env or {})}  # fmt: skip
    log = tmp / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen([sys.executable, "-m", "imagequeue_api", "serve"], env=env,
                               stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        ready = f"all {processes} API processes ready" if processes > 1 else "startup complete"
        wait_for_line(log, ready, api, "the API")
        yield f"http://127.0.0.1:{port}", url, key, lambda: stop(api)
    finally:
        stop(api)
        redis.stop()


if __name__ == "__main__":
    main()
