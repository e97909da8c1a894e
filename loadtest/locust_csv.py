"""Reading the CSV files Locust writes with ``--csv PREFIX --csv-full-history``."""

from __future__ import annotations

import csv
from pathlib import Path

import msgspec


class StatsRow(msgspec.Struct, frozen=True):
    """One row of ``PREFIX_stats.csv``: a request name over the whole run."""

    method: str
    name: str
    requests: int
    failures: int
    median_ms: float
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float
    rps: float


class HistoryRow(msgspec.Struct, frozen=True):
    """One row of ``PREFIX_stats_history.csv`` (percentiles over Locust's last ~10 s)."""

    t: int
    users: int
    name: str
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:  # Locust writes "N/A" before a name has any request
        return None


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def read_stats(prefix: Path) -> list[StatsRow]:
    """Every request name's totals, the ``Aggregated`` row last."""
    return [
        StatsRow(r["Type"], r["Name"], int(r["Request Count"]), int(r["Failure Count"]),
                 _number(r["Median Response Time"]) or 0.0, _number(r["95%"]),
                 _number(r["99%"]), _number(r["Max Response Time"]) or 0.0,
                 _number(r["Requests/s"]) or 0.0)
        for r in _rows(prefix.with_name(prefix.name + "_stats.csv"))
    ]  # fmt: skip


def read_history(prefix: Path) -> list[HistoryRow]:
    """The per-second history rows, every name and ``Aggregated``."""
    return [
        HistoryRow(int(r["Timestamp"]), int(r["User Count"]), r["Name"],
                   _number(r["Requests/s"]) or 0.0, _number(r["50%"]), _number(r["95%"]),
                   _number(r["99%"]))
        for r in _rows(prefix.with_name(prefix.name + "_stats_history.csv"))
    ]  # fmt: skip


def read_failures(prefix: Path) -> list[str]:
    """``method name: error (count)`` for every failure kind Locust recorded."""
    return [
        f"{r['Method']} {r['Name']}: {r['Error']} ({r['Occurrences']}x)"
        for r in _rows(prefix.with_name(prefix.name + "_failures.csv"))
    ]


def read_exceptions(prefix: Path) -> list[str]:
    """``message (count)`` for every exception raised inside a user."""
    return [
        f"{r['Message']} ({r['Count']}x)"
        for r in _rows(prefix.with_name(prefix.name + "_exceptions.csv"))
    ]
