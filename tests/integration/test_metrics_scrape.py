"""``/metrics`` as Prometheus meets it: one Content-Type, clean under ``promtool check
metrics``, and scraped by a real Prometheus with the bearer token."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagequeue_common.embedded_redis import free_port
from imagequeue_common.settings import Settings
from tests.support.api import ApiServer
from tests.support.debian import ensure_tool
from tests.support.procs import wait_until, worker_env

TOKEN = "metrics-token-for-the-scrape-test"  # noqa: S105 - a test's own
DEV_KEY = "dev-key-for-the-scrape-test"
EXPOSITION = "text/plain; version=0.0.4; charset=utf-8"


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    settings = Settings(
        redis_url=redis_url, queue_name=f"scrape{uuid.uuid4().hex[:10]}",
        database_url=f"sqlite:///{tmp_path}/scrape.db", assets_dir=str(tmp_path / "assets"),
        ai_generation_api_url="http://127.0.0.1:9/unused",  # queued, never run: no worker
    )  # fmt: skip
    env = worker_env(settings, metrics_token=TOKEN, api_dev_key=DEV_KEY, api_user_rps=0)
    server = ApiServer(env, tmp_path / "api.log").start()
    yield server
    server.stop()


def test_metrics_have_one_content_type_and_pass_promtool(api: ApiServer) -> None:
    promtool = ensure_tool("/usr/bin/promtool", "prometheus")
    made = httpx.post(
        f"{api.url}/api/v1/characters", headers={"Authorization": f"Bearer {DEV_KEY}"},
        json={"name": "Aria", "personality": {"poseId": "pose-standing"}},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    answer = httpx.get(f"{api.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers.get_list("content-type") == [EXPOSITION]
    assert 'imagequeue_jobs{state="waiting"} 1' in answer.text
    assert 'imagequeue_users{with_jobs="waiting"} 1' in answer.text
    linted = subprocess.run([promtool, "check", "metrics"], input=answer.content,
                            capture_output=True, timeout=30, check=False)  # fmt: skip
    assert (linted.returncode, linted.stdout + linted.stderr) == (0, b"")


async def test_a_real_prometheus_scrapes_it(api: ApiServer, tmp_path: Path) -> None:
    prometheus = ensure_tool("/usr/bin/prometheus", "prometheus")
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [{
            "job_name": "imagequeue", "authorization": {"credentials": TOKEN},
            "static_configs": [{"targets": [api.url.removeprefix("http://")]}],
        }],
    }))  # fmt: skip
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once; the test waits over HTTP
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=5) as client:

            async def scraped() -> bool:
                try:
                    found = await client.get("/query", params={"query": "imagequeue_workers"})
                except httpx.HTTPError:
                    return False
                return bool(found.status_code == 200 and found.json()["data"]["result"])

            await wait_until(scraped, 60, "Prometheus to scrape imagequeue_workers", poll_s=0.5)
            targets: list[dict[str, Any]] = (await client.get("/targets")).json()["data"][
                "activeTargets"
            ]
            assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]
            jobs = (await client.get("/query", params={"query": "imagequeue_jobs"})).json()
            states = {r["metric"]["state"] for r in jobs["data"]["result"]}
            assert {"waiting", "active", "completed", "failed"} <= states
    finally:
        proc.terminate()
        proc.wait(15)
