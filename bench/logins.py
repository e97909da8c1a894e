"""Login throttling benchmark: wrong dashboard passwords against a real API, one JSON line.

One ``imagequeue-api serve`` process on a private Redis, with the default limits
(``ADMIN_LOGIN_MAX_FAILURES`` 5 per username, ``ADMIN_LOGIN_MAX_FAILURES_PER_ADDRESS`` 30,
15 min lockout). Each scenario is a burst of ``--tries`` wrong passwords sent over
``--concurrency`` connections, and counts how many had their password checked (the API's
log has one warning per wrong password it checked: the last one before a lock answers 429
too, saying so), how many were refused unchecked, and how long the burst took:

- ``one_username_one_address`` — the issue's: one username, from one address;
- ``one_address_many_usernames`` — a new username on every try, from one address;
- ``one_username_many_addresses`` — one username, a new address on every try (the
  addresses come as ``X-Forwarded-For``, which uvicorn trusts from loopback, as from a proxy).

After the first burst the right password is tried too: it must get the same 429.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from bench.api import api_server

ADMIN = ("admin", "bench-admin-password-1")
LOGIN = "/admin/queues/login"
Try = Callable[[int], tuple[dict[str, str], dict[str, str]]]  # i -> (form, headers)


def checked_so_far(log: Path) -> int:
    """Wrong passwords the API has checked (and logged) so far."""
    return log.read_text(errors="replace").count("dashboard login: wrong password for")


async def burst(url: str, log: Path, tries: int, concurrency: int,
                make: Try) -> dict[str, object]:  # fmt: skip
    """``tries`` logins made by ``make`` over ``concurrency`` connections; what came back."""
    limits = httpx.Limits(max_connections=concurrency)
    codes: Counter[int] = Counter()
    queue = iter(range(tries))

    async def sender(client: httpx.AsyncClient) -> None:
        for i in queue:
            form, headers = make(i)
            codes[(await client.post(LOGIN, data=form, headers=headers)).status_code] += 1

    before = checked_so_far(log)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    checked = checked_so_far(log) - before
    return {"tries": tries, "checked": checked, "refused_unchecked": tries - checked,
            "answered_401": codes.pop(401, 0), "answered_429": codes.pop(429, 0),
            "other": dict(codes), "seconds": round(seconds, 3)}  # fmt: skip


def scenarios() -> dict[str, Try]:
    """How each scenario makes its ``i``-th try."""
    wrong = "not-the-password"
    return {
        "one_username_one_address": lambda i: ({"username": "admin", "password": wrong}, {}),
        "one_address_many_usernames": lambda i: (
            {"username": f"user-{i}", "password": wrong}, {"X-Forwarded-For": "10.9.0.1"}),
        "one_username_many_addresses": lambda i: (
            {"username": "admin2", "password": wrong},
            {"X-Forwarded-For": f"10.{i // 250 % 250}.{i % 250}.7"}),
    }  # fmt: skip


async def run(url: str, log: Path, args: argparse.Namespace) -> dict[str, object]:
    """Every scenario in turn (each on usernames and addresses of its own)."""
    figures: dict[str, object] = {}
    for name, make in scenarios().items():
        figures[name] = await burst(url, log, args.tries, args.concurrency, make)
        if name == "one_username_one_address":
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                right = await client.post(LOGIN, data={"username": ADMIN[0], "password": ADMIN[1]})
            figures["right_password_while_locked"] = right.status_code
            figures["retry_after_s"] = int(right.headers.get("retry-after", "0"))
    return figures


def main() -> None:
    """Start Redis and the API, run the bursts, print one JSON line."""
    parser = argparse.ArgumentParser(prog="just bench-logins")
    parser.add_argument("--tries", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {"ADMIN_PASSWORD": ADMIN[1]}
        with api_server(Path(tmp), 1, env) as (url, _, _, _):
            figures = asyncio.run(run(url, Path(tmp) / "api.log", args))
    line = {"bench": "logins", "concurrency": args.concurrency, **figures,
            "limits": "5 per username, 30 per address, per 15 min; lockout 15 min (defaults)",
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                       f"Python {platform.python_version()}"}  # fmt: skip
    print(json.dumps(line))


if __name__ == "__main__":
    main()
