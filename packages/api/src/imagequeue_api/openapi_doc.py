"""What ``/schema/openapi.json`` says beyond what Litestar infers, so that it tells the truth.

Litestar documents a handler's success answer and a 400 in its own default shape. Ours
answers every error as ``application/problem+json`` (``problems.py``), with statuses per
route; request bodies refuse unknown fields. Each route lists its error statuses through
:func:`errors`; :func:`finish_document` puts msgspec's own schemas of the request structs
(``additionalProperties: false``, every constraint) and the links between operations in
the built document.
schemathesis ``--checks all`` holds the document to it (``just fuzz``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Litestar
from litestar._openapi.plugin import OpenAPIPlugin  # the built document lives there
from litestar.openapi import ResponseSpec

from imagequeue_api.problems import PROBLEM_JSON, ProblemDoc
from imagequeue_api.schemas import Envelope, GenerationOut

WHY = {
    400: "The request is malformed; `errors` names each field.",
    401: "No valid API key (`Authorization: Bearer <key>`).",
    403: "Not allowed for this key's tier.",
    404: "No such resource of the caller's.",
    409: "The resource's state does not allow it now.",
    413: "The body is larger than `API_MAX_BODY_BYTES`.",
    415: "The body is not `application/json`.",
    422: "Well-formed but refers to something that does not exist.",
    429: "Too many requests or unfinished jobs; see `Retry-After`.",
    503: "Redis or the database does not answer, or generation is off; see `Retry-After`.",
}
COMMON = (401, 429, 503)
"""What every ``/api/v1`` route may answer: its key, its rate, its dependencies."""
BODY = (400, 413, 415)
"""What a route taking a JSON body may answer as well."""


DUPLICATE = {
    200: ResponseSpec(
        Envelope[GenerationOut], generate_examples=False,
        description="The job already waiting or running for this character and pose.",
    )
}  # fmt: skip
"""``POST /api/v1/generations``'s answer when it de-duplicates."""


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """Problem responses for ``statuses`` (with :data:`COMMON`), for a route's ``responses``."""
    return {
        status: ResponseSpec(
            ProblemDoc, description=WHY[status], media_type=PROBLEM_JSON, generate_examples=False
        )
        for status in sorted({*COMMON, *statuses})
    }


Link = tuple[str, str, str, str, str]
"""(operation, its status, the operation it leads to, that one's path parameter, the value
as an OpenAPI runtime expression); operations as ``"METHOD /path"``."""
_JOB = "/api/v1/generations/{job_id}"
LINKS: tuple[Link, ...] = tuple(
    (source, status, target, "job_id", value)
    for source, status, value in (
        ("POST /api/v1/generations", "202", "$response.body#/data/id"),
        ("POST /api/v1/generations", "200", "$response.body#/data/id"),
        ("POST /api/v1/characters", "201", "$response.body#/data/imageJob/id"),
    )
    for target in (
        f"GET {_JOB}",
        f"GET {_JOB}/events",
        f"POST {_JOB}/events-token",
        f"POST {_JOB}/cancel",
    )
)
"""Where a created job's id leads: clients (and schemathesis' stateful phase) follow these."""


def finish_document(
    structs: tuple[type, ...], streams: dict[str, dict[str, Any]]
) -> Callable[[Litestar], None]:
    """An ``on_startup`` hook completing the built document: ``structs``' schemas are
    msgspec's own, each of ``streams`` (``"METHOD /path"`` → one event's schema) documents
    its ``200 text/event-stream``, and :data:`LINKS` are added.

    Litestar's struct schemas drop what msgspec enforces on items (``list[Trait]`` lost its
    pattern and length) and ``forbid_unknown_fields``; msgspec's are what the decoder
    checks, to the letter (the same JSON Schema dialect as OpenAPI 3.1).
    """

    def finish(app: Litestar) -> None:
        document = app.plugins.get(OpenAPIPlugin).provide_openapi_schema()
        _, exact = msgspec.json.schema_components(
            structs, ref_template="#/components/schemas/{name}"
        )
        document.setdefault("components", {}).setdefault("schemas", {}).update(exact)
        for label, event in streams.items():
            content = _operation(document, label)["responses"]["200"]["content"]
            content["text/event-stream"]["schema"] = event
        add_links(document, LINKS)

    return finish


def add_links(document: dict[str, Any], links: tuple[Link, ...]) -> None:
    """Put ``links`` on their operations' responses in ``document``."""
    for source, status, target, parameter, value in links:
        response = _operation(document, source)["responses"][status]
        name = _operation(document, target)["operationId"]
        response.setdefault("links", {})[name] = {
            "operationId": name, "parameters": {parameter: value}
        }  # fmt: skip


def _operation(document: dict[str, Any], label: str) -> dict[str, Any]:
    method, _, path = label.partition(" ")
    found: dict[str, Any] = document["paths"][path][method.lower()]  # KeyError: a route gone
    return found
