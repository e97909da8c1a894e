"""The ways ``just compose-test`` breaks the stack on purpose, each counting what was lost."""

from __future__ import annotations

import time
from typing import Any

from loadtest.compose.client import Api, Submitter, one_image_each, submit, wait_final
from loadtest.compose.docker import (
    DockerError,
    Project,
    docker,
    health,
    hostname,
    inspect,
    restart_count,
)
from loadtest.compose.stack import (
    APP_SERVICES,
    live_workers,
    logs_not_json,
    stub_config,
    stub_stats,
    wait_workers,
)


def docker_version() -> str:
    return docker("version", "--format", "{{.Server.Version}}").strip()


def _app_containers(project: Project) -> list[str]:
    return [c for service in APP_SERVICES for c in project.containers(service)]


def _outcome(jobs: dict[str, tuple[Api, str]], timeout_s: float) -> dict[str, Any]:
    records = wait_final(jobs, timeout_s)
    states = [r["state"] for r in records.values()]
    return {"accepted": len(jobs), "completed": states.count("completed"),
            "lost": len(jobs) - states.count("completed"),
            "ran_twice": sum(1 for r in records.values()
                             if r.get("attempts", 1) > 1 or r.get("stalls", 0) > 0),
            "one_image_each": one_image_each(jobs, records), "records": records}  # fmt: skip


def kill_a_worker(project: Project, users: list[Api]) -> dict[str, Any]:
    """``docker kill`` a worker container while it runs jobs: they finish elsewhere once its
    leases run out, each character with one image."""
    sent = submit(users, 30, "Kill Phase")
    busy = [_busy_worker(project, 2)]
    victim = next(c for c in project.containers("worker") if hostname(c) == busy[0]["host"])
    docker("kill", victim)
    killed_at = time.monotonic()
    outcome = _outcome(sent.jobs, timeout_s=240)
    outcome.pop("records")
    return {**outcome, "running_at_last_beat": busy[0]["running"], "refused": sent.refused,
            "recovered_s": round(time.monotonic() - killed_at, 1),
            "killed_restarted_by_docker": inspect(victim)["State"]["Running"]}  # type: ignore[index]  # fmt: skip


def stop_a_busy_worker(project: Project, users: list[Api]) -> dict[str, Any]:
    """``docker stop`` (SIGTERM) a worker running jobs of 15-20 s: it waits for them, they
    complete on it (no stall), and it is gone within the compose file's grace period."""
    stub_config(project, latency_min_s=15, latency_max_s=20, time_scale=1.0)
    try:
        sent = submit(users, 12, "Stop Phase")
        busy = _busy_worker(project, 2)
        victim = next(c for c in project.containers("worker") if hostname(c) == busy["host"])
        started = time.monotonic()
        docker("stop", "-t", "150", victim)
        stop_s = time.monotonic() - started
    finally:
        stub_config(project, latency_min_s=30, latency_max_s=60, time_scale=0.05)
    outcome = _outcome(sent.jobs, timeout_s=240)
    outcome.pop("records")
    state = inspect(victim)["State"]
    assert isinstance(state, dict)
    return {**outcome, "running_on_stopped": busy["running"], "stop_s": round(stop_s, 1),
            "exit_code": state["ExitCode"]}  # fmt: skip


def _busy_worker(project: Project, running: int) -> dict[str, Any]:
    """A live worker running at least ``running`` jobs (waited for up to 60 s)."""
    deadline = time.monotonic() + 60
    while not (busy := [w for w in live_workers(project) if w["running"] >= running]):
        if time.monotonic() > deadline:
            raise DockerError(f"no worker ran {running} jobs at once within 60 s")
        time.sleep(0.3)
    return busy[0]


def restart_redis(project: Project, users: list[Api]) -> dict[str, Any]:
    """``docker restart`` the Redis container while users keep submitting and workers keep
    running: every accepted job completes, no process crashes."""
    apps = _app_containers(project)
    restarts = {c: restart_count(c) for c in apps}
    (redis,) = project.containers("redis")
    with Submitter(users, per_second=4, prefix="Redis Phase") as submitter:
        time.sleep(5)
        started = time.monotonic()
        docker("restart", "-t", "10", redis)
        restart_s = time.monotonic() - started
        time.sleep(10)
    outcome = _outcome(submitter.sent.jobs, timeout_s=300)
    outcome.pop("records")
    crashed = sum(restart_count(c) - n for c, n in restarts.items())
    return {**outcome, "refused_during_restart": submitter.sent.refused,
            "restart_s": round(restart_s, 1), "crashed": crashed}  # fmt: skip


def _per_second(records: dict[str, dict[str, Any]], start: float, end: float) -> float:
    done = [r for r in records.values() if r.get("finishedAt") and start <= r["finishedAt"] < end]
    return round(len(done) / (end - start), 2) if end > start else 0.0


def scale_workers(project: Project, users: list[Api]) -> dict[str, Any]:
    """Under a steady load, workers 3 -> 6 -> 1 with ``up --scale``: every job completes,
    none runs twice (the removed workers stop gracefully: running jobs finish first)."""
    project.run("up", "-d", "--no-recreate", "--scale", "worker=3", "worker")
    wait_workers(project, 3, 120)
    marks: dict[str, float] = {}
    with Submitter(users, per_second=9, prefix="Scale Phase") as submitter:
        marks["at_3"] = time.time()
        time.sleep(15)
        marks["to_6"] = time.time()
        project.run("up", "-d", "--no-recreate", "--scale", "worker=6", "worker")
        up_s = wait_workers(project, 6, 120)
        marks["at_6"] = time.time()
        time.sleep(15)
        marks["to_1"] = time.time()
        started = time.monotonic()
        running = sum(w["running"] for w in live_workers(project))
        project.run("up", "-d", "--no-recreate", "--scale", "worker=1", "worker")
        down_s = time.monotonic() - started
        marks["at_1"] = time.time()
        time.sleep(10)
        marks["end"] = time.time()
    outcome = _outcome(submitter.sent.jobs, timeout_s=600)
    records = outcome.pop("records")
    return {**outcome, "refused": submitter.sent.refused, "peak_workers": 6,
            "running_at_scale_down": running,
            "workers_after": len(live_workers(project)), "scale_up_s": round(up_s, 1),
            "scale_down_s": round(down_s, 1),
            "completed_per_s": {
                "3": _per_second(records, marks["at_3"], marks["to_6"]),
                "6": _per_second(records, marks["at_6"], marks["to_1"]),
                "1": _per_second(records, marks["at_1"], marks["end"])}}  # fmt: skip


def stub_peak(project: Project) -> int:
    peak: int = stub_stats(project)["peak_per_second"]
    return peak


def hygiene(project: Project) -> dict[str, Any]:
    """Users inside the containers, log lines that are not JSON, secrets in the image."""
    apps = _app_containers(project)
    uids = {c[:12]: docker("exec", c, "id", "-u").strip() for c in apps}
    config = inspect(apps[0])["Config"]
    assert isinstance(config, dict)
    image_env = docker("image", "inspect", "--format", "{{json .Config.Env}}", str(config["Image"]))
    secret_names = ("ADMIN_PASSWORD", "API_DEV_KEY", "AI_GENERATION_API_KEY", "POSTGRES_PASSWORD")
    return {"uids": uids,
            "log_lines_not_json": sum(logs_not_json(c) for s in ("api", "worker", "webhooks",
                                      "scheduler") for c in project.containers(s)),
            "secrets_in_image": [n for n in secret_names if n in image_env]}  # fmt: skip


def unhealthy(project: Project) -> list[str]:
    return [c[:12] for c in project.containers() if health(c) == "unhealthy"]
