"""Reading a JSON request body: its media type, then a typed decode whose every failure is a
400 problem naming the field.

Litestar decodes a body untyped first and converts it after, so a 5,000-deep array or an
invalid UTF-8 byte inside a string escapes as ``RecursionError`` or ``UnicodeDecodeError``
(a 500) with no field named. The route's ``before_request`` hook decodes the body straight
into its struct instead: msgspec stops at the first field that does not fit (an array where
a string belongs goes no deeper), and what is left is mapped here.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from litestar import Request

from imagequeue_api.problems import Problem
from imagequeue_api.schemas import PATTERN_MEANINGS

T = TypeVar("T")
JSON = "application/json"
Hook = Callable[[Request[Any, Any, Any]], Awaitable[None]]
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_NAMED = re.compile(r"(?:missing required|unknown) field `([^`]+)`")
_REGEX = re.compile(r"matching regex '((?:[^'\\]|\\.)*)'")
_SURROGATES = range(0xDC80, 0xDD00)  # where surrogateescape puts the bytes


def json_body(struct: type[msgspec.Struct]) -> Hook:
    """A ``before_request`` hook: the body must be JSON (415) that fits ``struct`` (400).

    A hook, not a guard: Litestar copies the route handler for every guard call.
    """

    async def check(request: Request[Any, Any, Any]) -> None:
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip().lower() != JSON:
            raise Problem(415, f"Send the body as {JSON}, not {content_type or 'nothing'}.")
        decode_body(await request.body(), struct)

    return check


def decode_body(body: bytes, struct: type[T]) -> T:
    """``body`` decoded as ``struct``; a 400 :class:`Problem` with the field path otherwise."""
    if not body.strip():
        raise _bad("A JSON body is required.", "", "missing body")
    try:
        return msgspec.json.decode(body, type=struct)
    except msgspec.ValidationError as exc:
        path, message = split_message(str(exc))
        raise _bad(f"Invalid body at `{path or '$'}`: {message}", path, message) from None
    except msgspec.DecodeError as exc:
        raise _bad(f"The body is not valid JSON: {exc}", "", str(exc)) from None
    except UnicodeDecodeError:
        path = bad_text_path(body)
        message = "not valid UTF-8"
        raise _bad(f"Invalid body at `{path or '$'}`: {message}", path, message) from None
    except RecursionError:
        raise _bad("The body is nested too deeply.", "", "nested too deeply") from None


def split_message(text: str) -> tuple[str, str]:
    """(dotted field path, message) of a msgspec validation error's text."""
    at = _AT.search(text)
    path = at.group(1) if at else ""
    message = text[: at.start()] if at else text
    named = _NAMED.search(message)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    regex = _REGEX.search(message)
    if regex:  # msgspec shows the pattern with its backslashes doubled
        message = PATTERN_MEANINGS.get(regex.group(1).replace("\\\\", "\\"), message)
    return path, message


def bad_text_path(body: bytes) -> str:
    """The path of the first string in ``body`` holding bytes that are not UTF-8.

    msgspec names only an offset inside that string. Each bad byte becomes a noncharacter
    the body does not contain; the body is decoded untyped and searched for it.
    """
    text = body.decode("utf-8", "surrogateescape")
    mark = next((chr(c) for c in range(0xFDD0, 0xFDF0) if chr(c) not in text), "")
    if not mark:
        return ""
    try:
        value = msgspec.json.decode(text.translate(dict.fromkeys(_SURROGATES, mark)))
        # A bad key shows as U+FFFD in the path, as any UTF-8 reader would show it.
        return (_path_of(value, mark) or "").replace(mark, "\ufffd")
    except (msgspec.DecodeError, RecursionError):
        return ""


def _path_of(value: Any, mark: str, path: str = "") -> str | None:
    if isinstance(value, str):
        return path if mark in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else str(key)
            found = here if mark in str(key) else _path_of(item, mark, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _path_of(item, mark, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _bad(detail: str, path: str, message: str) -> Problem:
    return Problem(400, detail, slug="validation", errors=[{"path": path, "message": message}])
