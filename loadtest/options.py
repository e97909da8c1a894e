"""The load test's parameters: read once from the command line (and ``REDIS_URL``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Final, Literal

import msgspec

from imagequeue_common.errors import SettingsError
from imagequeue_common.settings import load_settings
from loadtest.campaign import Tier

STUB_LATENCY_MIN_S: Final = 30.0
STUB_LATENCY_MAX_S: Final = 60.0
"""The seed's GPU time per image; the stub multiplies both by ``latency_scale``."""
TIER_MIX: Final[tuple[tuple[Tier, int], ...]] = (("premium", 20), ("regular", 60), ("bulk", 20))
"""Percent of the users per tier (premium → high, regular → normal, bulk → low priority)."""
Scenario = Literal["mixed", "flood"]
SCENARIOS: Final[tuple[Scenario, ...]] = ("mixed", "flood")
FLOOD_TIER: Final[Tier] = "regular"
"""Every user's tier in the flood scenario: one priority, so what is measured is the fair
share among the users of one priority."""
DEFAULT_FLOODERS: Final = 5


class Options(msgspec.Struct, frozen=True, kw_only=True):
    """One load test run."""

    users: int = 1000
    spawn_rate: float = 20.0
    """Users started per second: twice the rate limit, so a backlog forms from the first
    second (it peaks near half the users), while the POSTs stay a stream one API process
    absorbs; 100/s is a thundering herd that this 2-core machine answers at p95 > 200 ms."""
    max_duration_s: int = 900
    """Locust's ``--run-time``: a ceiling, the run ends when every user is done."""
    latency_scale: float = 0.02
    """The stub's 30-60 s per image times this: 0.6-1.2 s by default."""
    workers: int = 2
    concurrency: int = 5
    """Slots per worker process (``WORKER_CONCURRENCY``)."""
    rate_limit: int = 10
    """Upstream starts per second (``RATE_LIMIT_MAX`` over a 1 s window)."""
    api_processes: int = 1
    poll_min_s: float = 1.0
    poll_max_s: float = 2.0
    scheduler: bool = False
    out_dir: str = "loadtest/reports"
    redis_url: str = ""
    """``REDIS_URL`` when given (the run then works in a queue of its own and deletes its
    keys afterwards); empty: a private redis-server."""
    scenario: Scenario = "mixed"
    """``mixed``: one character per user, tiers mixed (``TIER_MIX``); ``flood``: one tier,
    and the first ``flooders`` users make ``flood_jobs`` characters each at the start."""
    flooders: int = DEFAULT_FLOODERS
    flood_jobs: int = 100
    """Characters per flooder: at most ``user_max_pending``, so none is refused."""
    user_max_pending: int = 100
    """``USER_MAX_PENDING`` the stack runs with (passed through from the environment)."""
    api_user_rps: int = 20
    """``API_USER_RPS`` the stack runs with: a flooder paces itself at half of it."""
    webhooks: bool = False
    """Every character asks for its ``completed`` by webhook: a receiver and a webhook
    worker run too, and check 8 counts what arrived."""
    rate_limit_guard_ms: int = 25
    """``RATE_LIMIT_GUARD_MS`` the stack runs with: each upstream permit's window is this
    much longer than the rate limit's 1 s, which the starts per second sustained pay for."""

    @property
    def slots(self) -> int:
        """Jobs all workers run at once."""
        return self.workers * self.concurrency

    @property
    def mean_latency_s(self) -> float:
        """The stub's configured mean time per image."""
        return (STUB_LATENCY_MIN_S + STUB_LATENCY_MAX_S) / 2 * self.latency_scale

    @property
    def max_latency_s(self) -> float:
        """The stub's configured longest time per image."""
        return STUB_LATENCY_MAX_S * self.latency_scale

    @property
    def flood(self) -> bool:
        """The flood scenario."""
        return self.scenario == "flood"

    @property
    def jobs(self) -> int:
        """Characters (and image jobs) the whole run makes."""
        if not self.flood:
            return self.users
        return self.users - self.flooders + self.flooders * self.flood_jobs


def _parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(
        prog="python -m loadtest.run",
        description="Start the stack, run the Locust suite headless, check the targets, "
        "write the reports. Exit status 1 when a check fails.",
    )
    add = p.add_argument
    add("--users", type=int, default=d.users, help=f"simulated users (default {d.users})")
    add(
        "--spawn-rate",
        type=float,
        default=d.spawn_rate,
        help=f"users started per second (default {d.spawn_rate:g})",
    )
    add(
        "--max-duration",
        type=int,
        default=d.max_duration_s,
        dest="max_duration_s",
        metavar="S",
        help=f"seconds before Locust gives up (default {d.max_duration_s})",
    )
    add(
        "--latency-scale",
        type=float,
        default=d.latency_scale,
        help=f"stub latency = 30-60 s x this (default {d.latency_scale:g}: 0.6-1.2 s)",
    )
    add("--workers", type=int, default=d.workers, help=f"worker processes (default {d.workers})")
    add(
        "--concurrency",
        type=int,
        default=d.concurrency,
        help=f"slots per worker (default {d.concurrency})",
    )
    add(
        "--rate-limit",
        type=int,
        default=d.rate_limit,
        help=f"upstream starts per second (default {d.rate_limit})",
    )
    add(
        "--api-processes",
        type=int,
        default=d.api_processes,
        help=f"API processes (default {d.api_processes})",
    )
    add(
        "--poll-min",
        type=float,
        default=d.poll_min_s,
        dest="poll_min_s",
        metavar="S",
        help=f"shortest pause between polls, s (default {d.poll_min_s:g})",
    )
    add(
        "--poll-max",
        type=float,
        default=d.poll_max_s,
        dest="poll_max_s",
        metavar="S",
        help=f"longest pause between polls, s (default {d.poll_max_s:g})",
    )
    add("--scheduler", action="store_true", help="also run the cleanup scheduler")
    add(
        "--webhooks",
        action="store_true",
        help="every character asks for its completed event by webhook (a receiver and a "
        "webhook worker run too; check 8)",
    )
    add(
        "--scenario",
        choices=SCENARIOS,
        default=d.scenario,
        help="mixed: one character per user, tiers mixed (default); flood: one tier, and "
        "--flooders users make --flood-jobs characters each at the start",
    )
    add(
        "--flooders",
        type=int,
        default=None,
        metavar="N",
        help=f"flood: users that make many characters (default {DEFAULT_FLOODERS})",
    )
    add(
        "--flood-jobs",
        type=int,
        default=None,
        metavar="M",
        help="flood: characters per flooder, at most USER_MAX_PENDING "
        "(default: USER_MAX_PENDING, 100 unless set)",
    )
    add(
        "--out",
        default=d.out_dir,
        dest="out_dir",
        metavar="DIR",
        help=f"reports go to OUT/<UTC timestamp>/ (default {d.out_dir})",
    )
    return p  # fmt: skip


def parse_options(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Options:
    """The run's options from ``argv`` and ``REDIS_URL``; exits with a usage error."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(environ)
    except SettingsError as exc:
        parser.error(str(exc))
    quota = settings.user_max_pending
    flood = args.scenario == "flood"
    if not flood and (args.flooders is not None or args.flood_jobs is not None):
        parser.error("--flooders and --flood-jobs belong to --scenario flood")
    if args.flooders is None:
        args.flooders = DEFAULT_FLOODERS
    if args.flood_jobs is None:
        args.flood_jobs = quota or 100
    checks = [
        ("--users must be at least 1", args.users >= 1),
        ("--spawn-rate must be above 0", args.spawn_rate > 0),
        ("--max-duration must be at least 1", args.max_duration_s >= 1),
        ("--latency-scale must be 0 or more", args.latency_scale >= 0),
        ("--workers and --concurrency must be at least 1",
         min(args.workers, args.concurrency) >= 1),
        ("--rate-limit must be at least 1 (the drain check needs a limit)", args.rate_limit >= 1),
        ("--api-processes must be from 1 to 64", 1 <= args.api_processes <= 64),
        ("--poll-min must be above 0 and at most --poll-max",
         0 < args.poll_min_s <= args.poll_max_s),
        ("--flooders must be at least 1 and below --users (the check needs single-job users)",
         not flood or 1 <= args.flooders < args.users),
        (f"--flood-jobs must be from 2 to USER_MAX_PENDING ({quota}), so none is refused",
         not flood or 2 <= args.flood_jobs <= (quota or args.flood_jobs)),
    ]  # fmt: skip
    for message, ok in checks:
        if not ok:
            parser.error(message)
    stack = {"redis_url": environ.get("REDIS_URL", "").strip(), "user_max_pending": quota,
             "api_user_rps": settings.api_user_rps,
             "rate_limit_guard_ms": settings.rate_limit_guard_ms}  # fmt: skip
    return msgspec.convert({**vars(args), **stack}, Options)
