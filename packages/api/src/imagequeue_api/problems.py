"""One place that turns every error into an RFC 9457 problem document.

Bodies are ``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``,
``instance`` and, for validation, ``errors: [{path, message}]``. A 5xx never carries
internals: the exception is logged with its traceback and the client gets a plain sentence.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from redis.exceptions import RedisError

from imagequeue_common.errors import (
    CharacterNotFoundError,
    GenerationDisabledError,
    JobNotFoundError,
    JobStateError,
    PoseNotFoundError,
    QueueFullError,
    QueueUnavailableError,
    StoreUnavailableError,
    UserQuotaError,
)
from imagequeue_common.outage import RedisOutage

log = logging.getLogger("imagequeue.api")
PROBLEM_JSON = "application/problem+json"
RETRY_UNAVAILABLE_S = 5
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `([^`]+)`")
TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class FieldError(msgspec.Struct, frozen=True):
    """One field a request got wrong."""

    path: str
    """Dotted path into the body (``personality.poseId``); empty for the body as a whole."""
    message: str


class ProblemDoc(msgspec.Struct, frozen=True):
    """The shape of every error answer (RFC 9457), as the OpenAPI document shows it."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] = []
    """Present on validation problems: each field and what is wrong with it."""
    predicted_wait_seconds: float | None = msgspec.field(default=None, name="predictedWaitSeconds")
    """Present on a ``queue-wait`` refusal: how long a new job would wait to start."""
    max_queue_wait_seconds: int | None = msgspec.field(default=None, name="maxQueueWaitSeconds")
    """Present on a ``queue-wait`` refusal: the longest wait the queue admits."""
    position: int | None = None
    """Present on a ``queue-wait`` refusal: jobs that would be claimed before the new one."""
    queued: int | None = None
    """Present on a ``queue-full`` refusal: jobs waiting or delayed now."""
    max_queue_length: int | None = msgspec.field(default=None, name="maxQueueLength")
    """Present on a ``queue-full`` refusal: the most the queue holds."""


class Problem(Exception):  # noqa: N818 - it is the problem itself, raised
    """Raise to answer with a problem document (status, detail, optional headers)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str = "",
        headers: dict[str, str] | None = None,
        errors: list[dict[str, str]] | None = None,
        extra: dict[str, object] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or TITLES.get(status, "error").lower().replace(" ", "-")
        self.headers = headers or {}
        self.errors = errors
        self.extra = extra or {}
        """More members of the problem document (camelCase names, as ``ProblemDoc``'s)."""


def problem_response(request: Request[Any, Any, Any], problem: Problem) -> Response[bytes]:
    """The problem document for ``problem``."""
    body: dict[str, Any] = {
        "type": f"/problems/{problem.slug}",
        "title": TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
    }
    if problem.errors:
        body["errors"] = problem.errors
    body.update(problem.extra)
    return Response(
        msgspec.json.encode(body),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def to_problem(exc: Exception) -> Problem:
    """Map any exception to a :class:`Problem` (unknown ones become a bare 500)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, ValidationException):
        return _validation(exc)
    if isinstance(exc, HTTPException):
        headers = {k: str(v) for k, v in (exc.headers or {}).items()}
        return Problem(exc.status_code, _http_detail(exc), headers=headers)
    mapped = _domain(exc)
    if mapped is not None:
        return mapped
    log.error("unhandled error", exc_info=exc)
    return Problem(500, "Something went wrong on our side; it has been logged.")


def request_problem(request: Request[Any, Any, Any], exc: Exception) -> Problem:
    """:func:`to_problem`, but an unreachable Redis is logged once per outage (and once when
    it ends) by the process's :class:`RedisOutage`, not once per request."""
    outage = getattr(getattr(request.app.state, "resources", None), "outage", None)
    if isinstance(outage, RedisOutage) and outage.noted(exc):
        return queue_unavailable()
    return to_problem(exc)


def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Litestar exception handler for every exception (an unreachable Redis: 503)."""
    return problem_response(request, request_problem(request, exc))


def queue_unavailable() -> Problem:
    """The 503 for a queue that does not answer."""
    return Problem(
        503,
        "The job queue is not answering; try again shortly.",
        headers={"Retry-After": str(RETRY_UNAVAILABLE_S)},
    )


def _domain(exc: Exception) -> Problem | None:
    unavailable = {"Retry-After": str(RETRY_UNAVAILABLE_S)}
    if isinstance(exc, StoreUnavailableError):
        log.warning("database unavailable: %s", exc)
        return Problem(
            503, "The database is not answering; try again shortly.", headers=unavailable
        )
    if isinstance(exc, QueueUnavailableError | RedisError | ConnectionError):
        log.warning("queue unavailable: %s", exc)
        return queue_unavailable()
    if isinstance(exc, UserQuotaError):
        return Problem(
            429,
            f"You already have {exc.limit} images waiting or in progress; wait for some to finish.",
            slug="user-quota",
            headers={"Retry-After": "10"},
        )
    if isinstance(exc, QueueFullError):  # a burst that passed the admission check at once
        return Problem(429, f"The queue is full: at most {exc.limit} jobs wait; try again later.",
                       slug="queue-full", headers={"Retry-After": "10"},
                       extra={"maxQueueLength": exc.limit})  # fmt: skip
    if isinstance(exc, CharacterNotFoundError | JobNotFoundError):
        return Problem(404, str(exc))
    if isinstance(exc, PoseNotFoundError):
        return Problem(422, str(exc), slug="unknown-pose",
                       errors=[{"path": "personality.poseId", "message": str(exc)}])  # fmt: skip
    if isinstance(exc, JobStateError):
        return Problem(409, str(exc), slug="job-state")
    if isinstance(exc, GenerationDisabledError):
        return Problem(503, str(exc), slug="generation-disabled")
    return None


def _validation(exc: ValidationException) -> Problem:
    errors = []
    for item in exc.extra if isinstance(exc.extra, list) else []:
        if isinstance(item, dict):
            key = str(item.get("key", ""))
            message = str(item.get("message", ""))
            errors.append({"path": _field_path(key, message), "message": message})
    cause = str(exc.__cause__) if exc.__cause__ is not None else ""
    detail = cause.replace("`$.data.", "`$.").replace("`$.data`", "`$`") or "Invalid request."
    if "missing required field `data`" in detail:
        detail, errors = "A JSON body is required.", [{"path": "", "message": "missing body"}]
    return Problem(400, detail, slug="validation", errors=errors)


def _field_path(key: str, message: str) -> str:
    """The dotted path of the field a message is about (``personality.poseId``)."""
    base = "" if key == "data" else key
    named = _NAMED_FIELD.search(message)
    if named:
        return f"{base}.{named.group(1)}" if base else named.group(1)
    return base


def _http_detail(exc: HTTPException) -> str:
    if exc.status_code == 413:
        return "The request body is larger than this API accepts."
    if exc.status_code == 405:
        return "This method is not allowed here."
    if exc.status_code == 404:
        return "No such resource."
    return str(exc.detail)
