"""``just compose-servers``: the seed's three servers on one Redis, run for real.

One compose project holds what the servers share (``infra/docker-compose.yml`` with only
Redis, PostgreSQL, the stub AI server and the one scheduler started); three more projects,
``infra/server.yml`` each, are the servers: an API (2 processes) on a port of its own, 2
workers and a webhook worker, on the shared project's network and image volume. Users
submit through all three APIs at more than the rate limit; then one whole server is killed
(``docker kill`` of its every container). Checks: the stub never sees more than the limit in
any second, every accepted job completes (the dead server's jobs on the others), each
character has one image and every API serves every image. One JSON line; exit 1 on a failure.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from typing import Any

from loadtest.compose.client import Api, Submitter, one_image_each, wait_final
from loadtest.compose.docker import Project, docker, wait_healthy
from loadtest.compose.stack import apis, files, free_port, live_workers, run_env, stub_stats

SERVERS = 3
RATE_LIMIT = 10


def _servers(env: dict[str, str]) -> list[tuple[Project, str]]:
    found = []
    for n in range(1, SERVERS + 1):
        port = free_port()
        project = Project(f"iq3server{n}", files("server.yml"),
                          {**env, "API_PUBLISH": f"127.0.0.1:{port}"})  # fmt: skip
        found.append((project, f"http://127.0.0.1:{port}"))
    return found


def run() -> dict[str, Any]:
    env = run_env({"SHARED_NETWORK": "iq3shared_default", "SHARED_ASSETS": "iq3shared_assets",
                   "WORKER_REPLICAS": "2"})  # fmt: skip
    shared = Project("iq3shared", files("docker-compose.yml"), env)
    servers = _servers(env)
    figures: dict[str, Any] = {"compose_servers": "imagequeue", "servers": SERVERS,
                               "rate_limit": RATE_LIMIT}  # fmt: skip
    try:
        shared.run("build", "scheduler", timeout_s=1800)
        shared.run("up", "-d", "redis", "postgres", "stub-ai", "scheduler")
        wait_healthy(shared.containers(), 180)
        for project, _ in servers:
            project.run("up", "-d")
        wait_healthy([c for p, _ in servers for c in p.containers()], 180)
        first = servers[0][0]
        figures["live_workers"] = len(live_workers(first))
        keys = apis(servers[0][1], first, 3 * SERVERS)
        users = [made.at(servers[n % SERVERS][1]) for n, made in enumerate(keys)]
        with Submitter(users, per_second=14, prefix="Three Servers") as submitter:
            time.sleep(20)
            victim = servers[1][0]
            killed = victim.containers()
            docker("kill", *killed)
            killed_at = time.monotonic()
            time.sleep(20)
        figures["killed_containers"] = len(killed)
        readers = {job: (owner.at(servers[0][1]), char)
                   for job, (owner, char) in submitter.sent.jobs.items()}  # fmt: skip
        records = wait_final(readers, timeout_s=600)
        figures["recovered_s"] = round(time.monotonic() - killed_at, 1)
        states = [r["state"] for r in records.values()]
        figures.update(
            accepted=len(records), completed=states.count("completed"),
            lost=len(records) - states.count("completed"),
            taken_over=sum(1 for r in records.values() if r.get("stalls", 0) > 0),
            refused=submitter.sent.refused,
            one_image_each=one_image_each(readers, records),
            images_on_every_api=_images_everywhere(readers, records, servers[2][1]),
        )  # fmt: skip
        finished = sorted(r["finishedAt"] for r in records.values() if r.get("finishedAt"))
        figures["completed_per_s"] = round(len(finished) / (finished[-1] - finished[0]), 2)
        figures["stub_peak_per_second"] = stub_stats(shared, "stub-ai")["peak_per_second"]
    except Exception as exc:  # noqa: BLE001 - reported in the JSON line, then exit 1
        figures["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    finally:
        for project, _ in servers:
            project.down()
        shared.down()
    return figures


def _images_everywhere(readers: dict[str, tuple[Api, str]], records: dict[str, dict[str, Any]],
                       other_url: str) -> bool:  # fmt: skip
    """A sample of the images, fetched from another server's API than the one read so far."""
    for job_id in list(records)[:20]:
        owner, character_id = readers[job_id]
        urls = owner.character(character_id).get("displayImageUrls") or []
        if len(urls) != 1:
            return False
        owner.at(other_url).png(urls[0])
    return True


def main() -> int:
    figures = run()
    if "error" in figures:
        print(json.dumps(figures))
        return 1
    passed = {
        "rate_limit_held": figures["stub_peak_per_second"] <= RATE_LIMIT,
        "nothing_lost": figures["lost"] == 0 and figures["accepted"] > 0,
        "one_image_each": figures["one_image_each"] and figures["images_on_every_api"],
        "dead_server_jobs_taken_over": figures["taken_over"] > 0,
    }
    figures["checks_failed"] = [name for name, ok in passed.items() if not ok]
    figures["checks_passed"] = f"{sum(passed.values())}/{len(passed)}"
    figures["machine"] = f"{platform.machine()}, docker " + docker(
        "version", "--format", "{{.Server.Version}}").strip()  # fmt: skip
    print(json.dumps(figures))
    return 0 if all(passed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
