"""ETA benchmark: the ``etaSeconds`` a client is told at creation against the real time.

Each scenario runs on a fresh queue with its own API process, two real worker processes of
five slots, the stub AI server and API keys of 30 users (10 per tier: premium → high,
regular → normal, bulk → low). For every character created through
``POST /api/v1/characters`` it keeps the answered ``imageJob.etaSeconds`` and the job's own
``createdAt`` → ``finishedAt`` (Redis server clock), and prints one JSON line with the
per-tier median and p90 of ``|ETA - actual| / actual`` and the median ``floor``: the
error of the best ETA that cannot see the future (``loadtest.checks.eta_floor``):

- ``burst`` — the issue's: stub at 1.5-3 s per image, 240 characters in a burst (8 per
  user), then 60 more premium ones (6 per premium user) 15 s later;
- ``steady`` — the same stub, Poisson arrivals at 80 % of the slots' capacity (10 slots ÷
  2.25 s), each from a random one of the 30 users, for 75 s; jobs created in the first
  15 s (the queue filling up) are left out;
- ``slow`` — the burst on the seed's slow GPU (30-60 s per image), every duration scaled by
  0.05 so it runs in about a minute: the stub's latency, ``EXPECTED_JOB_S`` (45 s → 2.25 s),
  the rate-limit window (1 s → 50 ms) and the second wave's delay (300 s → 15 s).
- ``flood`` — fair share: the same stub, single characters from 60 other regular users at
  random (Poisson, half the slots' capacity) for 60 s, and 20 s in, one regular user creates
  60 at once. Figures for the flooder's jobs and for the others' after the first 20 s: the
  flooder's wait depends on the newcomers who take turns before its jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec
from redis.asyncio import Redis

from bench.api import percentile
from bench.engine import ROOT, Workers
from bench.pipeline import Stub, redis_and_stub
from imagequeue_api.apikeys import ApiKeyStore
from imagequeue_common.embedded_redis import free_port
from imagequeue_common.queue.keys import QueueKeys
from imagequeue_common.queue.ledger import JobLedger
from imagequeue_common.settings import Settings
from loadtest.checks import eta_floor

TIERS = ("premium", "regular", "bulk")
USERS_PER_TIER = 10
PROCESSES, SLOTS = 2, 5
POSE = "pose-standing"


class Scenario(msgspec.Struct, frozen=True):
    """One way of loading a fresh queue; every duration already scaled."""

    name: str
    latency_min_s: float
    latency_max_s: float
    time_scale: float = 1.0
    expected_job_s: float = 2.25
    rate_window_ms: int = 1000
    burst: int = 0
    wave: int = 0
    wave_after_s: float = 0.0
    steady_load: float = 0.0
    steady_s: float = 0.0
    warmup_s: float = 0.0
    flood: int = 0
    """One regular user's characters, created at once ``warmup_s`` into the steady flow."""


SCENARIOS = {
    "burst": Scenario("burst", 1.5, 3.0, burst=240, wave=60, wave_after_s=15),
    "steady": Scenario("steady", 1.5, 3.0, steady_load=0.8, steady_s=75, warmup_s=15),
    "slow": Scenario("slow", 30, 60, time_scale=0.05, expected_job_s=45 * 0.05,
                     rate_window_ms=50, burst=240, wave=60, wave_after_s=300 * 0.05),
    "flood": Scenario("flood", 1.5, 3.0, steady_load=0.5, steady_s=60, warmup_s=20, flood=60),
}  # fmt: skip
FLOOD_NEWCOMERS = 60
"""Regular users who each create one character at a time in the flood scenario."""


class Created(msgspec.Struct, frozen=True):
    """One creation as the client saw it."""

    tier: str
    job_id: str
    eta_s: float | None
    counted: bool = True
    """False for the steady scenario's warm-up (in the queue, not in the figures)."""


class Run:
    """The API and the workers for one scenario, on a queue of their own."""

    def __init__(self, scenario: Scenario, redis_url: str, stub_url: str, tmp: Path) -> None:
        self.scenario = scenario
        self.queue = f"eta-{scenario.name}-{os.getpid()}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url,
            "QUEUE_NAME": self.queue, "API_PORT": str(self.port),
            "DATABASE_URL": f"sqlite:///{tmp}/{scenario.name}.db",
            "ASSETS_DIR": f"{tmp}/{scenario.name}-assets", "WORKER_CONCURRENCY": str(SLOTS),
            "RATE_LIMIT_MAX": "10", "RATE_LIMIT_DURATION_MS": str(scenario.rate_window_ms),
            "AI_GENERATION_API_URL": f"{stub_url}/generate", "LOG_LEVEL": "warning",
            "EXPECTED_JOB_S": f"{scenario.expected_job_s:g}",
            # The flooder's 60 creations in a row are not to meet the per-user request limit.
            **({"API_USER_RPS": "0"} if scenario.flood else {}),
        }  # fmt: skip
        self.log = tmp / f"{scenario.name}-api.log"

    async def start(self, redis: Redis) -> None:
        """The API (ready) and the workers (heartbeating)."""
        with self.log.open("wb") as out:
            self.api = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "imagequeue_api", "serve", env=self.env,
                stdout=out, stderr=out, cwd=ROOT,
            )  # fmt: skip
        self.workers = Workers(["imagequeue_worker", "run", "--processes", str(PROCESSES)],
                               self.env)  # fmt: skip
        workers_key = QueueKeys.for_queue(self.queue).workers
        async with httpx.AsyncClient() as http:
            deadline = time.monotonic() + 60
            while not await _ready(http, f"{self.url}/readyz") or (
                int(await redis.zcard(workers_key)) < PROCESSES
            ):
                if time.monotonic() > deadline or self.api.returncode is not None:
                    sys.exit(f"the stack did not start: {self.log.read_text()[-2000:]}")
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Workers first, then the API."""
        self.workers.stop()
        if self.api.returncode is None:
            self.api.terminate()
            await self.api.wait()


async def _ready(http: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await http.get(url, timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


async def create(http: httpx.AsyncClient, url: str, tier: str, key: str) -> Created:
    """One character through the API; its job id and the ETA it was answered."""
    body = {"name": "Bench", "personality": {"poseId": POSE}}
    answer = await http.post(f"{url}/api/v1/characters", json=body,
                             headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    answer.raise_for_status()
    job = answer.json()["data"]["imageJob"]
    return Created(tier, job["id"], job["etaSeconds"])


async def burst(
    http: httpx.AsyncClient, url: str, users: list[tuple[str, str]], n: int
) -> list[Created]:
    """``n`` characters from ``users`` at once, each user creating its share in a row."""

    async def one_user(tier: str, key: str, count: int) -> list[Created]:
        return [await create(http, url, tier, key) for _ in range(count)]

    shares = [n // len(users) + (i < n % len(users)) for i in range(len(users))]
    done = await asyncio.gather(
        *(one_user(t, k, c) for (t, k), c in zip(users, shares, strict=True))
    )
    return [c for user in done for c in user]


async def flood(
    http: httpx.AsyncClient, url: str, key: str, n: int, after_s: float
) -> list[Created]:
    """``n`` characters of one user in a row, ``after_s`` from now."""
    await asyncio.sleep(after_s)
    made = [await create(http, url, "flooder", key) for _ in range(n)]
    return [msgspec.structs.replace(c, tier="flooder") for c in made]


async def drive(scenario: Scenario, url: str, users: list[tuple[str, str]]) -> list[Created]:
    """The scenario's arrivals; every creation (steady: the warm-up's not counted)."""
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
        if scenario.burst:
            start = time.monotonic()
            first = await burst(http, url, users, scenario.burst)
            # The wave's delay counts from the start of the burst.
            await asyncio.sleep(max(start + scenario.wave_after_s - time.monotonic(), 0))
            premium = [u for u in users if u[0] == "premium"]
            return first + await burst(http, url, premium, scenario.wave)
        rate = (
            scenario.steady_load
            * PROCESSES
            * SLOTS
            / ((scenario.latency_min_s + scenario.latency_max_s) / 2 * scenario.time_scale)
        )
        rng = random.Random(11)
        flooded = None
        if scenario.flood:  # users[0] floods; the others come one character at a time
            flooded = asyncio.create_task(
                flood(http, url, users[0][1], scenario.flood, scenario.warmup_s)
            )
            users = [("newcomer", key) for _, key in users[1:]]
        start, tasks, at = time.monotonic(), [], 0.0
        while at < scenario.steady_s:
            await asyncio.sleep(max(0.0, start + at - time.monotonic()))
            tier, key = rng.choice(users)
            task = asyncio.create_task(create(http, url, tier, key))
            tasks.append((at >= scenario.warmup_s, task))
            at += rng.expovariate(rate)
        answers = [(kept, await t) for kept, t in tasks]
        done = [msgspec.structs.replace(c, counted=kept) for kept, c in answers]
        return done + (await flooded if flooded else [])


def relative_errors(
    created: list[Created], actual_s: dict[str, float], floor: dict[str, float]
) -> dict[str, Any]:
    """Per tier: how many, median and p90 of ``|ETA - actual| / actual``, the share of
    ETAs that were too long, how many came without an ETA, and the median error of the
    best ETA blind to the future (``floor``, see ``loadtest.checks.eta_floor``)."""
    out: dict[str, Any] = {}
    groups = [t for t in (*TIERS, "flooder", "newcomer") if any(c.tier == t for c in created)]
    for tier in groups:
        mine = [c for c in created if c.tier == tier and c.counted]
        # No ETA told is as wrong as any: an infinite error.
        errors = sorted(math.inf if c.eta_s is None
                        else abs(c.eta_s - actual_s[c.job_id]) / actual_s[c.job_id]
                        for c in mine)  # fmt: skip
        long = sum(1 for c in mine if c.eta_s is not None and c.eta_s > actual_s[c.job_id])
        out[tier] = {
            "jobs": len(mine), "median": _figure(statistics.median(errors)) if errors else None,
            "p90": _figure(percentile(errors, 0.9)) if errors else None,
            "too_long": round(long / len(mine), 2) if mine else None,
            "no_eta": sum(1 for c in mine if c.eta_s is None),
            "floor": round(statistics.median(floor[c.job_id] for c in mine), 3)
            if mine else None,
        }  # fmt: skip
    return out


def _figure(value: float) -> float | str:
    return round(value, 3) if math.isfinite(value) else "inf"


async def run_scenario(scenario: Scenario, redis: Redis, redis_url: str, stub: Stub,
                       tmp: Path) -> dict[str, Any]:  # fmt: skip
    """Start a fresh stack, drive the scenario, wait for every job; the figures."""
    config = {"latency_min_s": scenario.latency_min_s, "latency_max_s": scenario.latency_max_s,
              "time_scale": scenario.time_scale, "seed": 7}  # fmt: skip
    async with httpx.AsyncClient() as http:
        (await http.post(f"{stub.url}/stub/config", json=config, timeout=5)).raise_for_status()
    run = Run(scenario, redis_url, stub.url, tmp)
    keys = ApiKeyStore(redis, run.queue)
    if scenario.flood:
        users = [("regular", (await keys.create(f"regular-{i}", "regular"))[0])
                 for i in range(FLOOD_NEWCOMERS + 1)]  # fmt: skip
    else:
        users = [(tier, (await keys.create(f"{tier}-{i}", tier))[0])
                 for tier in TIERS for i in range(USERS_PER_TIER)]  # fmt: skip
    await run.start(redis)
    ledger = JobLedger(redis, Settings(redis_url=redis_url, queue_name=run.queue))
    try:
        created = await drive(scenario, run.url, users)
        deadline = time.monotonic() + 600
        while (await ledger.stats()).completed < await _total(ledger):
            if time.monotonic() > deadline:
                sys.exit(f"{scenario.name}: jobs did not finish in time")
            await asyncio.sleep(0.2)
        jobs = [await ledger.get_job(c.job_id) for c in created]
    finally:
        await run.stop()
    actual = {j.id: ((j.finished_at or 0) - j.created_at) / 1000 for j in jobs}
    floor = eta_floor((j.id, j.created_at, j.started_at or 0, j.finished_at or 0) for j in jobs)
    return relative_errors(created, actual, floor)


async def _total(ledger: JobLedger) -> int:
    stats = await ledger.stats()
    return stats.total


async def main() -> None:
    """Run the chosen scenarios on a private Redis and the stub; print one JSON line."""
    parser = argparse.ArgumentParser(prog="just bench-eta")
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    args = parser.parse_args()
    chosen = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    line: dict[str, Any] = {"bench": "eta", "metric": "|ETA at creation - actual| / actual",
                            "workers": f"{PROCESSES} x {SLOTS} slots"}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        async with redis_and_stub(Path(tmp)) as (url, redis, stub):
            for name in chosen:
                line[name] = await run_scenario(SCENARIOS[name], redis, url, stub, Path(tmp))
            version = (await redis.info("server"))["redis_version"]
    line["scenarios"] = {name: _describe(SCENARIOS[name]) for name in chosen}
    line["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}, Redis {version}")  # fmt: skip
    print(json.dumps(line))


def _describe(s: Scenario) -> str:
    latency = f"stub {s.latency_min_s:g}-{s.latency_max_s:g} s"
    if s.time_scale != 1:
        latency += f" x {s.time_scale:g} (all durations scaled)"
    if s.burst:
        return f"{latency}, {s.burst} at once + {s.wave} premium {s.wave_after_s:g} s later"
    if s.flood:
        return (f"{latency}, single characters of {FLOOD_NEWCOMERS} regular users, Poisson at "
                f"{s.steady_load:.0%} of capacity for {s.steady_s:g} s; {s.flood} of one "
                f"regular user at once {s.warmup_s:g} s in")  # fmt: skip
    return (f"{latency}, Poisson at {s.steady_load:.0%} of capacity for {s.steady_s:g} s, "
            f"first {s.warmup_s:g} s not counted")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
