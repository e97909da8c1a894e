"""What the first real ``docker-compose up`` found, kept true without Docker: the files of
``infra/`` read as compose 1.29 and v2 both read them, and the settings that made the stack
fail there stay fixed (``just compose-test`` runs them for real, with dockerd)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from imagequeue_common.settings import Settings

INFRA = Path(__file__).resolve().parents[2] / "infra"


def load(name: str) -> dict[str, Any]:
    found: dict[str, Any] = yaml.safe_load((INFRA / name).read_text())
    return found


def seconds(value: str) -> float:
    units = {"s": 1, "m": 60}
    return float(value[:-1]) * units[value[-1]]


def test_no_top_level_name_and_extends_only_from_app_yml() -> None:
    # docker-compose 1.29 refuses a top-level `name:` and extending a service with depends_on.
    for name in ("app.yml", "docker-compose.yml", "server.yml"):
        assert "name" not in load(name), name
    app = load("app.yml")["services"]
    assert all("depends_on" not in service for service in app.values())
    for name in ("docker-compose.yml", "server.yml"):
        for service in load(name)["services"].values():
            if "extends" in service:
                assert service["extends"]["file"] == "app.yml"
                assert service["extends"]["service"] in app


def test_every_long_running_process_has_a_healthcheck_and_a_long_enough_grace() -> None:
    app = load("app.yml")["services"]
    for name in ("api", "worker", "webhooks", "stub-ai"):
        assert app[name]["healthcheck"]["test"][0] == "CMD", name
    assert app["worker"]["healthcheck"]["test"][1:] == ["imagequeue-worker", "health"]
    # SIGTERM lets running jobs finish: the longest a job may run must fit in the grace.
    assert seconds(app["worker"]["stop_grace_period"]) > Settings().ai_total_timeout_s
    assert all(app[name].get("init") for name in ("api", "worker", "webhooks", "scheduler"))


def test_secrets_only_where_they_belong() -> None:
    app = load("app.yml")
    shared = app["x-app"]["environment"]
    assert "ADMIN_PASSWORD" not in shared
    assert "ADMIN_PASSWORD" in app["services"]["api"]["environment"]
    assert shared["LOG_FORMAT"] == "json"


def test_redis_keeps_everything_and_lets_the_other_containers_in() -> None:
    conf = dict(
        line.split(None, 1) for line in (INFRA / "redis.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )  # fmt: skip
    assert conf == {"maxmemory-policy": "noeviction", "appendonly": "yes",
                    "appendfsync": "everysec", "save": '""', "protected-mode": "no"}  # fmt: skip
    redis = load("docker-compose.yml")["services"]["redis"]
    assert "ports" not in redis  # protected mode is off: never published


def test_the_image_runs_as_its_own_user_and_owns_data() -> None:
    dockerfile = (INFRA / "Dockerfile").read_text()
    final = dockerfile[dockerfile.rindex("\nFROM ") :]
    assert "USER imagequeue" in final
    assert "chown -R imagequeue:imagequeue /data" in final
    assert "pip install" not in final  # uv and its cache stay in the build stage
    # A VOLUME would give every container an anonymous volume, left behind by each one.
    assert not any(line.startswith("VOLUME") for line in final.splitlines())
