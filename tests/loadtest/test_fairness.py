"""The flood scenario's pure parts: Jain's index, the fair-share bound, check 7, the options."""

from __future__ import annotations

import pytest

from loadtest.checks import Facts, JobFacts, physical_limit_s
from loadtest.fairness import (
    capacity_per_s,
    check_fair_share,
    fair_shares,
    figures,
    jain_index,
    one_job_s,
)
from loadtest.options import Options, parse_options


def job(job_id: str, user: str, created: int, started: int | None) -> JobFacts:
    """A completed normal-priority job created and started at the given ms."""
    finished = None if started is None else started + 500
    return JobFacts(job_id, "normal", "completed", created, started, finished, 1, user)


def flood(single_start_ms: int) -> list[JobFacts]:
    """Flooder ``f`` queues 10 jobs at 0-9 ms; single-job user ``s`` arrives at 500 ms. One
    start per second: ``f``'s jobs start at 0, 1000, 2000, ... except where ``s`` starts."""
    starts = [t for t in range(0, 11_000, 1000) if t != single_start_ms]
    jobs = [job(f"f{i}", "f", i, starts[i]) for i in range(10)]
    return [*jobs, job("s", "s", 500, single_start_ms)]


def test_jain_index_is_one_when_equal_and_one_over_n_when_one_has_all() -> None:
    assert jain_index([2.0, 2.0, 2.0]) == 1.0
    assert jain_index([5.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)
    assert jain_index([1.0, 2.0, 3.0]) == pytest.approx(36 / 42)
    assert jain_index([0.0, 0.0]) == 1.0
    assert jain_index([]) is None
    assert jain_index([1.0, float("inf")]) is None


def test_round_robin_gives_a_single_job_user_one_turn_and_passes() -> None:
    # Round-robin: after f's first job (started at 0), s's turn comes at the next start.
    (share,) = fair_shares(flood(single_start_ms=1000), capacity=1.0, slack_s=1.0)
    assert share.user == "s"
    assert share.wait_s == pytest.approx(0.5)
    assert share.users_waiting == 2  # f (9 jobs waiting at 500 ms) and s itself
    assert share.ahead == 0
    assert share.overtaken == 0
    assert share.bound_s == pytest.approx(2 / 1.0 + 1.0)
    assert share.ratio <= 1


def test_fifo_behind_a_flood_exceeds_the_bound() -> None:
    # FIFO: s waits for all of f's 9 waiting jobs: 9.5 s against a bound of 3 s.
    (share,) = fair_shares(flood(single_start_ms=10_000), capacity=1.0, slack_s=1.0)
    assert share.wait_s == pytest.approx(9.5)
    assert share.users_waiting == 2
    assert share.ahead == 9
    assert share.ratio > 3


def test_later_arrivals_that_go_first_are_counted_and_a_job_never_started_fails() -> None:
    jobs = [
        job("a", "a", 0, 3000),  # waits while b and c, created after it, start
        job("b", "b", 100, 1000),
        job("c", "c", 200, 2000),
        job("d", "d", 0, None),  # never started
        job("e1", "e", 0, 0),  # e has two jobs: not a single-job user
        job("e2", "e", 0, 500),
    ]
    shares = {s.user: s for s in fair_shares(jobs, capacity=10.0, slack_s=0.5)}
    assert set(shares) == {"a", "b", "c", "d"}
    assert shares["a"].overtaken == 2
    assert shares["a"].ahead == 3  # b, c and e2
    assert shares["a"].users_waiting == 3  # a, d and e (e2); not b and c, created later
    assert shares["d"].wait_s == float("inf")
    assert shares["d"].ratio > 1


def test_other_priorities_are_not_counted_among_the_users_waiting() -> None:
    high = JobFacts("h", "high", "completed", 0, 900, 1400, 1, "h")
    jobs = [high, job("n", "n", 10, 1000)]
    share = next(s for s in fair_shares(jobs, capacity=1.0, slack_s=1.0) if s.user == "n")
    assert share.users_waiting == 1


def test_capacity_is_the_rate_limit_with_its_guard_or_the_slots_and_one_job_the_longer() -> None:
    options = Options()  # 10/s, 25 ms guard; 10 slots at 0.9 s: 11.1/s
    assert capacity_per_s(options) == pytest.approx(10 / 1.025)
    assert one_job_s(options) == pytest.approx(1.2)  # 60 s x 0.02
    slow = Options(latency_scale=0.05, rate_limit_guard_ms=0)  # 10 slots at 2.25 s: 4.4/s
    assert capacity_per_s(slow) == pytest.approx(10 / 2.25)
    assert one_job_s(Options(latency_scale=0.005)) == pytest.approx(1.025)  # the window


def facts(options: Options, jobs: list[JobFacts]) -> Facts:
    """Facts holding only ``jobs`` (the fairness check reads nothing else)."""
    return Facts(
        options=options, queue="lt", locust_exit=0, stats=[], failures=[], exceptions=[],
        results=None, jobs=jobs, images={}, characters_per_user={}, planned={}, files=0,
        stub_peak_per_second=0, stub_submissions=0, stub_statuses={}, redis_version="7",
    )  # fmt: skip


def test_check_seven_passes_on_round_robin_and_fails_on_fifo() -> None:
    options = Options(scenario="flood", users=2, flooders=1, flood_jobs=10, rate_limit=1,
                      rate_limit_guard_ms=0, latency_scale=0.01)  # fmt: skip
    # capacity 1/s (10 slots at 0.45 s would do 22/s), one job time 1 s (0.6 s runs)
    fair = check_fair_share(facts(options, flood(single_start_ms=1000)))
    assert fair.number == 7
    assert fair.passed, fair.detail
    assert "1/1 single-job users, 0 over their bound" in fair.detail
    fifo = check_fair_share(facts(options, flood(single_start_ms=10_000)))
    assert not fifo.passed
    assert "1 over their bound" in fifo.detail
    assert "jobs started first minus other users waiting: at most +8" in fifo.detail
    line = figures(facts(options, flood(single_start_ms=10_000)))
    assert line["jain_index"] == 1.0  # one user: equal to itself
    assert line["fair_share"]["over_bound"] == 1
    assert line["fair_share"]["wait_vs_bound_max"] == pytest.approx(9.5 / 3, abs=1e-3)
    # The mixed scenario's line has none: its lower tiers wait for the higher ones on purpose.
    assert figures(facts(Options(), flood(single_start_ms=1000))) == {}


def test_a_missing_single_job_user_fails_check_seven() -> None:
    options = Options(scenario="flood", users=3, flooders=1, flood_jobs=10)
    check = check_fair_share(facts(options, flood(single_start_ms=1000)))
    assert not check.passed
    assert check.detail.startswith("1/2 single-job users")


def test_flood_options_count_every_character_and_default_to_the_quota() -> None:
    options = parse_options(["--scenario", "flood", "--users", "300"], {})
    assert (options.flooders, options.flood_jobs, options.user_max_pending) == (5, 100, 100)
    assert options.jobs == 295 + 5 * 100
    assert physical_limit_s(options) == pytest.approx(795 / 10 + 0.9)
    quota = parse_options(["--scenario", "flood"], {"USER_MAX_PENDING": "40"})
    assert quota.flood_jobs == 40
    mixed = parse_options([], {"API_USER_RPS": "8", "RATE_LIMIT_GUARD_MS": "0"})
    assert (mixed.scenario, mixed.jobs, mixed.api_user_rps, mixed.rate_limit_guard_ms) == (
        "mixed", 1000, 8, 0
    )  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--scenario", "flood", "--flood-jobs", "101"], {}),  # above the quota
        (["--scenario", "flood", "--flood-jobs", "50"], {"USER_MAX_PENDING": "20"}),
        (["--scenario", "flood", "--flood-jobs", "1"], {}),
        (["--scenario", "flood", "--users", "5", "--flooders", "5"], {}),  # no single-job user
        (["--scenario", "flood", "--flooders", "0"], {}),
        (["--flooders", "3"], {}),  # the mixed scenario has none
        (["--scenario", "flood"], {"USER_MAX_PENDING": "lots"}),
    ],
)
def test_bad_flood_options_are_usage_errors(argv: list[str], environ: dict[str, str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_options(argv, environ)
    assert exited.value.code == 2
