"""``python -m loadtest.run`` (``uv run just loadtest``): the load test, start to verdict.

1. Start the stack (``loadtest.stack``): a private Redis unless ``REDIS_URL`` is given, the
   stub AI server, the API, the workers, optionally the scheduler; wait until all are ready.
2. Make one API key per simulated user (20 % premium, 60 % regular, 20 % bulk; the flood
   scenario: all regular, the first ``--flooders`` users with ``--flood-jobs`` characters
   each) and write the plan for the Locust process.
3. Run Locust headless as a subprocess (``loadtest/locustfile.py``) while sampling the
   queue and the stub; Locust quits by itself when every user has its image.
4. Gather the facts, stop everything (also on a failure or Ctrl-C), check the six targets
   (``loadtest.checks``; the flood scenario adds a seventh, the fair share:
   ``loadtest.fairness``), write ``loadtest/reports/<UTC timestamp>/`` and print one
   PASS/FAIL line per check and one JSON summary line. Exit 1 when a check failed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

import msgspec
from redis.asyncio import Redis

from imagequeue_api.apikeys import ApiKeyStore
from imagequeue_common.redis_conn import command_client
from imagequeue_common.store import CharacterStore, open_store
from loadtest.campaign import Client, Plan, Tier, write_plan, write_private
from loadtest.checks import Check, Facts
from loadtest.facts import Gatherer
from loadtest.fairness import all_checks
from loadtest.locust_csv import read_history
from loadtest.options import FLOOD_TIER, TIER_MIX, Options, parse_options
from loadtest.report import summary, write_report
from loadtest.sampler import Sampler
from loadtest.stack import ROOT, Service, Stack, StackError, say
from loadtest.webhooks import with_webhooks

LOCUST_GRACE_S = 120.0
"""How long Locust may take past ``--run-time`` before it is interrupted."""


def tier_of(index: int) -> Tier:
    """User ``index``'s tier: every 100 consecutive users hold exactly ``TIER_MIX``, mixed."""
    slot, cumulative = (index * 61) % 100, 0  # 61 is prime to 100: a permutation of 0-99
    for tier, percent in TIER_MIX:
        cumulative += percent
        if slot < cumulative:
            return tier
    return TIER_MIX[-1][0]


async def make_plan(
    options: Options,
    client: Redis,
    store: CharacterStore,
    queue: str,
    *,
    hook_url: str = "",
    secrets_path: Path | None = None,
) -> tuple[Plan, str]:
    """One API key per user, and one for the sampler; the plan and the sampler's key."""
    keys = ApiKeyStore(client, queue)
    clients, secrets = [], {}
    for i in range(options.users):
        user_id, tier = f"lt-{i:05d}", FLOOD_TIER if options.flood else tier_of(i)
        # The flooders come first: Locust starts the users in the plan's order.
        characters = options.flood_jobs if options.flood and i < options.flooders else 1
        made = await keys.create_key(user_id, tier, "load test")
        secrets[user_id] = made.webhook_secret
        clients.append(Client(user_id, tier, made.plaintext, characters))
    monitor, _ = await keys.create("lt-monitor", "premium", "load test sampler")
    poses = [p.id for p in await store.list_poses()]
    # Half the per-user request rate, as a well-behaved client keeps (the dev demo does).
    pace = 2 / options.api_user_rps if options.api_user_rps else 0.02
    plan = Plan(clients=clients, pose_ids=poses, poll_min_s=options.poll_min_s,
                poll_max_s=options.poll_max_s, pace_s=pace,
                webhook_url=f"{hook_url}/hook" if options.webhooks else "")  # fmt: skip
    if options.webhooks and secrets_path is not None:
        write_private(secrets_path, msgspec.json.encode(secrets))
    return plan, monitor


LOCUST_NICE = 10


def locust_service(options: Options, stack: Stack, plan_path: Path, report_dir: Path) -> Service:
    """Locust headless against the stack's API, its CSV and HTML into ``report_dir``."""
    args = [
        sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
        "--headless", "-u", str(options.users), "-r", f"{options.spawn_rate:g}",
        "--run-time", f"{options.max_duration_s}s", "--host", stack.api_url,
        "--csv", str(report_dir / "locust"), "--csv-full-history",
        "--html", str(report_dir / "locust.html"), "--only-summary",
        "--plan-file", str(plan_path), "--results-file", str(report_dir / "results.json"),
    ]  # fmt: skip
    env = {**stack.base_env, "PYTHONPATH": str(ROOT)}
    # The load generator and the stub stand for other machines. On one shared 2-core box,
    # Locust at full priority starves the API, the workers and the stub alike, and the
    # stub's clock then stamps arrivals late by tens of ms; at a lower priority it takes
    # the CPU that is left (its own timings include any wait it gets for that).
    return Service("locust", args, env, report_dir / "logs" / "locust.log", nice=LOCUST_NICE)


async def run_locust(locust: Service, sampler: Sampler, options: Options) -> int | None:
    """Run Locust to its end while the sampler runs; its exit code."""
    stop = asyncio.Event()
    sampling = asyncio.create_task(sampler.run(stop), name="sampler")
    locust.start()
    flood = (f", {options.flooders} of them flooders with {options.flood_jobs} characters each"
             if options.flood else "")  # fmt: skip
    say(f"Locust: {options.users} users at {options.spawn_rate:g}/s{flood} "
        f"(log: {locust.log_path})")  # fmt: skip
    try:
        # A thread waits for the process, so the event loop stays free for the sampler.
        await asyncio.to_thread(locust.wait, options.max_duration_s + LOCUST_GRACE_S)
    finally:
        locust.stop(timeout_s=60)  # SIGINT: on SIGTERM Locust would skip its HTML report
        stop.set()
        await sampling
    return locust.proc.returncode if locust.proc else None


async def drive(
    options: Options, stack: Stack, work_dir: Path, report_dir: Path
) -> tuple[Facts, Sampler]:
    """Keys, the Locust run, the facts; the stack is up throughout."""
    client = command_client(stack.redis_url)
    store = await open_store(stack.database_url)
    try:
        plan, monitor_key = await make_plan(options, client, store, stack.queue,
                                            hook_url=stack.receiver_url,
                                            secrets_path=stack.secrets_path)  # fmt: skip
        plan_path = work_dir / "plan.json"
        write_plan(plan_path, plan)
        sampler = Sampler(
            stack.api_url, monitor_key, stack.stub_url, options.jobs, options.rate_limit
        )
        locust = locust_service(options, stack, plan_path, report_dir)
        exit_code = await run_locust(locust, sampler, options)
        say(f"Locust exited with {exit_code}; gathering the results")
        gatherer = Gatherer(options, client, store, queue=stack.queue, stub_url=stack.stub_url,
                            assets_dir=stack.assets_dir)  # fmt: skip
        facts = await gatherer.gather(plan, exit_code, report_dir / "locust",
                                      report_dir / "results.json")  # fmt: skip
        if options.webhooks:
            facts = await with_webhooks(facts, stack.receiver_url, stack.heard_path)
    finally:
        await store.close()
        await client.aclose()
    return facts, sampler


def conclude(facts: Facts, sampler: Sampler, report_dir: Path) -> list[Check]:
    """Check the targets, write the reports, print the verdict lines; the checks."""
    checks = all_checks(facts)
    line = summary(facts, checks, report_dir)
    arrivals = sorted(sampler.submissions.values())
    history = read_history(report_dir / "locust")
    write_report(report_dir / "report.html", facts, checks, line, queue=sampler.queue,
                 arrivals=arrivals, history=history)  # fmt: skip
    (report_dir / "summary.json").write_text(json.dumps(line, indent=2) + "\n")
    samples = {"queue": sampler.queue, "upstream_arrivals": arrivals}
    (report_dir / "samples.json").write_bytes(msgspec.json.encode(samples))
    (report_dir / "jobs.json").write_bytes(msgspec.json.encode(facts.jobs))
    for check in checks:
        print(check.line(), flush=True)
    print(json.dumps(line), flush=True)
    return checks


def _terminate_like_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """A SIGTERM (a CI timeout, ``timeout``) stops the stack as a Ctrl-C does, instead of
    leaving its process groups orphaned: it runs whatever handles SIGINT right now (asyncio's
    inside ``asyncio.run``, else Python's, which raises ``KeyboardInterrupt``)."""
    del signum
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


def main(argv: list[str] | None = None) -> int:
    """Run the load test; 0 when every check passed, 1 when one failed, 2/130 otherwise."""
    options = parse_options(argv, os.environ)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # Started in the background by a shell: SIGINT is ignored, and the children would
        # inherit that and sit out the SIGINT that stops them gracefully.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate_like_ctrl_c)
    report_dir = Path(options.out_dir) / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    report_dir.mkdir(parents=True, exist_ok=True)
    say(f"reports in {report_dir}")
    if options.spawn_rate <= options.rate_limit and not options.flood:
        say("note: users arrive no faster than the rate limit, so no backlog forms and the "
            "drain measures the arrivals, not the queue")  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="iq-loadtest-") as tmp:
            work_dir = Path(tmp)
            with Stack(options, work_dir, report_dir / "logs", os.environ) as stack:
                facts, sampler = asyncio.run(drive(options, stack, work_dir, report_dir))
                say("stopping the stack")
    except KeyboardInterrupt:
        say("interrupted: everything stopped, no checks")
        return 130
    except StackError as exc:
        say(f"the stack did not start: {exc}")
        return 2
    checks = conclude(facts, sampler, report_dir)
    return 0 if all(c.passed for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
