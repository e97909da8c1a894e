"""``just compose-test``: build the image, start ``infra/docker-compose.yml`` as it is
(Redis with AOF and noeviction, PostgreSQL, the API with 2 processes, 3 workers, the webhook
worker, the scheduler, the stub AI server), run the seed's flow through the published port,
then break it on purpose and count what was lost. One JSON line; exit 1 when a check fails.

Needs dockerd (and, where no registry answers, ``just local-bases`` first). Test settings:
the stub runs at 1/20 of a real GPU's 30-60 s and leases are 10 s (``stack.run_env``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

from loadtest.compose import phases
from loadtest.compose.client import dashboard_login, seed_flow
from loadtest.compose.docker import Project, image_size, wait_healthy
from loadtest.compose.stack import apis, files, free_port, run_env


def checks(figures: dict[str, Any]) -> dict[str, bool]:
    """What must hold, by name."""
    kill, restart, scale = figures["kill"], figures["redis_restart"], figures["scale"]
    stop = figures["stop"]
    return {
        "seed_flow": bool(figures["dashboard_login"]) and figures["png_bytes"] > 0,
        "healthy": figures["unhealthy_at_end"] == [],
        # Its last heartbeat's count is up to a third of a lease old at the kill (jobs of
        # 1.5-3 s end meanwhile): at least one job must have been taken back, none lost.
        "killed_worker_jobs_finish_elsewhere": kill["lost"] == 0
        and kill["one_image_each"]
        and kill["ran_twice"] >= 1,
        "sigterm_lets_running_jobs_finish": stop["lost"] == 0
        and stop["ran_twice"] == 0
        and stop["exit_code"] == 0
        and stop["stop_s"] < 150,
        "redis_restart_loses_nothing": restart["lost"] == 0
        and restart["crashed"] == 0
        and restart["one_image_each"],
        "scale_3_6_1": scale["lost"] == 0
        and scale["peak_workers"] == 6
        and scale["workers_after"] == 1
        and scale["ran_twice"] == 0,
        "rate_limit_held": figures["stub_peak_per_second"] <= figures["rate_limit"],
        "non_root": all(uid != "0" for uid in figures["uids"].values()),
        "json_logs": figures["log_lines_not_json"] == 0,
        "no_secret_in_image": figures["secrets_in_image"] == [],
    }


def run(keep: bool) -> dict[str, Any]:
    port = free_port()
    project = Project("iqcomposetest", files("docker-compose.yml"),
                      run_env({"API_PUBLISH": f"127.0.0.1:{port}"}))  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    figures: dict[str, Any] = {"compose_test": "imagequeue", "rate_limit": 10}
    try:
        started = time.monotonic()
        project.run("build", timeout_s=1800)
        figures["build_s"] = round(time.monotonic() - started, 1)
        figures["image_mb"] = round(image_size("imagequeue:latest") / 1e6)
        started = time.monotonic()
        project.run("up", "-d")
        figures["healthy_s"] = round(
            time.monotonic() - started + wait_healthy(project.containers(), 180), 1
        )
        users = apis(base_url, project, 6)
        login = lambda: dashboard_login(base_url, "admin", project.env["ADMIN_PASSWORD"])  # noqa: E731
        figures.update(seed_flow(users[0], login))
        figures["kill"] = phases.kill_a_worker(project, users)
        figures["stop"] = phases.stop_a_busy_worker(project, users)
        figures["redis_restart"] = phases.restart_redis(project, users)
        figures["scale"] = phases.scale_workers(project, users)
        figures["stub_peak_per_second"] = phases.stub_peak(project)
        figures.update(phases.hygiene(project))
        figures["unhealthy_at_end"] = phases.unhealthy(project)
    except Exception as exc:  # noqa: BLE001 - reported in the JSON line, then exit 1
        figures["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        if not keep:
            project.down()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="just compose-test", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    args = parser.parse_args(argv)
    figures = run(args.keep)
    if "error" in figures:
        print(json.dumps(figures))
        return 1
    passed = checks(figures)
    figures["checks_failed"] = [name for name, ok in passed.items() if not ok]
    figures["checks_passed"] = f"{sum(passed.values())}/{len(passed)}"
    figures["machine"] = f"{platform.machine()}, docker {phases.docker_version()}"
    print(json.dumps(figures))
    return 0 if all(passed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
