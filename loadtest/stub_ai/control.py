"""The stub's own routes: read and change its config, read and reset its statistics."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response, get, post

from loadtest.stub_ai.config import ConfigError, StubConfig
from loadtest.stub_ai.stats import StatsSnapshot
from loadtest.stub_ai.submissions import AnyRequest, Stub


@get("/stub/config")
async def read_config(stub: Stub) -> StubConfig:
    """The live config (with what is left of the script)."""
    return stub.plan.config


@post("/stub/config", status_code=200)
async def change_config(request: AnyRequest, stub: Stub) -> Response[Any]:
    """Apply a partial JSON object; 422 naming the field and no change when it is bad."""
    try:
        changes = msgspec.json.decode(await request.body())
        config = stub.plan.reconfigure(changes)
    except (msgspec.DecodeError, ConfigError) as exc:
        return Response({"error": f"config unchanged: {exc}"}, status_code=422)
    return Response(config)


@get("/stub/stats")
async def read_stats(stub: Stub) -> StatsSnapshot:
    """Everything counted since the start or the last reset."""
    return stub.stats.snapshot()


@post("/stub/reset", status_code=200)
async def reset(stub: Stub) -> StatsSnapshot:
    """Clear the statistics and the script; answer the cleared statistics."""
    stub.stats.reset()
    stub.plan.restart()
    return stub.stats.snapshot()


ROUTES = [read_config, change_config, read_stats, reset]
