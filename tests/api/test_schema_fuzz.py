"""schemathesis against ``/schema/openapi.json`` of a running API: no 5xx, and every answer
fits the schema it documents.

Driven by hand (operations → Hypothesis strategies) rather than through schemathesis'
pytest plugin, whose lazy fixtures do not work with pytest 9.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from imagequeue_common.settings import Settings
from tests.support.api import ApiServer
from tests.support.procs import worker_env

pytestmark = pytest.mark.slow
DEV_KEY = "dev-key-for-schemathesis-runs"
EXAMPLES = 25
AnyCase = Case[Any]


def test_no_server_errors_and_answers_fit_the_schema(redis_url: str, tmp_path: Path) -> None:
    queue = f"fuzz{uuid.uuid4().hex[:10]}"
    app_settings = Settings(
        redis_url=redis_url,
        queue_name=queue,
        database_url=f"sqlite:///{tmp_path}/fuzz.db",
        assets_dir=str(tmp_path / "assets"),
    )
    env = worker_env(app_settings, api_dev_key=DEV_KEY, api_user_rps=0, user_max_pending=0)
    server = ApiServer(env, tmp_path / "api.log").start()
    try:
        schema = schemathesis.openapi.from_url(f"{server.url}/schema/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) >= 10
        for operation in operations:
            if operation.path.endswith("/events"):
                continue  # a stream that lasts until its job ends; covered over real HTTP
            check(operation.as_strategy(), server.url)
    finally:
        server.stop()


def check(strategy: st.SearchStrategy[AnyCase], base_url: str) -> None:
    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def run(case: AnyCase) -> None:
        case.call_and_validate(
            base_url=base_url,
            headers={"Authorization": f"Bearer {DEV_KEY}"},
            checks=[not_a_server_error, response_schema_conformance],
        )

    run()
