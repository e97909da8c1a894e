"""What ``/schema/openapi.json`` says is what the API does (schemathesis checks it at large
in test_schema_fuzz.py; these are the points clients generated from it rely on)."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Litestar]
PROBLEM = "application/problem+json"


async def document(client: Client) -> dict[str, Any]:
    answer = await client.get("/schema/openapi.json")
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


async def test_every_error_is_a_documented_problem(client: Client) -> None:
    paths = (await document(client))["paths"]
    for path, item in paths.items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert list(response["content"]) == [PROBLEM], (method, path, status)
                    assert response["content"][PROBLEM]["schema"] == {
                        "$ref": "#/components/schemas/ProblemDoc"}  # fmt: skip
            if path.startswith("/api/v1"):
                assert {"401", "429", "503"} <= set(operation["responses"]), (method, path)
    create = paths["/api/v1/characters"]["post"]["responses"]
    assert {"400", "403", "409", "413", "415", "422"} <= set(create)


async def test_request_bodies_refuse_unknown_fields_as_the_api_does(client: Client) -> None:
    schemas = (await document(client))["components"]["schemas"]
    for name in ("CreateCharacter", "Personality", "CreateGeneration"):
        assert schemas[name]["additionalProperties"] is False, name
    traits = schemas["Personality"]["properties"]["traits"]["items"]
    assert (traits["maxLength"], traits["pattern"]) == (200, r"^[^\x00-\x1f\x7f]*$")


async def test_the_event_stream_is_documented_as_one(client: Client) -> None:
    events = (await document(client))["paths"]["/api/v1/generations/{job_id}/events"]["get"]
    assert set(events["responses"]) >= {"200", "204", "401", "404"}
    assert list(events["responses"]["200"]["content"]) == ["text/event-stream"]
    assert {p["name"] for p in events["parameters"]} >= {"token", "Last-Event-ID"}


async def test_options_lists_every_method_of_the_path(client: Client) -> None:
    for path, methods in (("/api/v1/characters", "GET, OPTIONS, POST"),
                          ("/api/v1/generations/x1", "DELETE, GET, OPTIONS")):  # fmt: skip
        answer = await client.options(path)
        assert answer.headers["allow"] == methods, path
