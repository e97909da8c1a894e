"""The ETA's floor: what the best ETA blind to the future still misses."""

from __future__ import annotations

import pytest

from loadtest.checks import eta_floor


def test_later_cut_ins_and_the_own_run_are_what_no_eta_at_creation_knows() -> None:
    # Every job runs 1 s (the mean). "low" is created at 0 behind "a" (there already) and
    # waits 4 s while "a" and three highs created later start: 3 of the 4 starts it waited
    # for were unforeseeable, 3 s of its 5 s. "a" waited for nothing.
    jobs = [
        ("a", -1000, 1000, 2000),
        ("low", 0, 4000, 5000),
        ("h1", 500, 2000, 3000),
        ("h2", 600, 3000, 4000),
        ("h3", 700, 3500, 4500),
    ]
    floor = eta_floor(jobs)
    assert floor["low"] == pytest.approx(3 / 4 * 4 / 5)
    assert floor["a"] == 0
    # h2 waited for h1's start only, which was already there when h2 was created.
    assert floor["h2"] == 0


def test_a_run_longer_than_the_mean_is_missed_too() -> None:
    # Runs of 1 s and 3 s (mean 2), neither waiting: each misses 1 s of its own time.
    floor = eta_floor([("short", 0, 0, 1000), ("long", 0, 0, 3000)])
    assert floor == pytest.approx({"short": 1.0, "long": 1 / 3})
