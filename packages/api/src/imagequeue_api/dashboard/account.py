"""Logging in and out of the dashboard, and ending sessions from it.

A login try is throttled first (:mod:`.throttle`: 429 with ``Retry-After`` while the
username or the client address is locked, the password unchecked), then checked; a right
one opens a new session (a new token every time: a token planted before the login is
worth nothing after it). Logout ends the session in Redis, so a copy of the cookie is
worth nothing either. An admin can end every session of a login, or every session.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Redirect

from imagequeue_api.dashboard.access import (
    check_csrf,
    cleared_cookie,
    require_admin,
    require_viewer,
    session_cookie,
    session_of,
)
from imagequeue_api.dashboard.logins import Role
from imagequeue_api.dashboard.pages import BASE, back, render
from imagequeue_api.dashboard.throttle import Attempt
from imagequeue_api.resources import Res, Resources

log = logging.getLogger("imagequeue.api.dashboard")
WRONG = "Wrong username or password."


class LoginForm(msgspec.Struct):
    """The login form (longer fields are refused before anything is counted or checked)."""

    username: Annotated[str, msgspec.Meta(max_length=256)] = ""
    password: Annotated[str, msgspec.Meta(max_length=1024)] = ""


class EndForm(msgspec.Struct):
    """End sessions: every one of ``user``, or every session when ``user`` is empty."""

    csrf: str = ""
    user: Annotated[str, msgspec.Meta(max_length=256)] = ""


class ActionForm(msgspec.Struct):
    """A form with only the CSRF token."""

    csrf: str = ""


def client_address(request: Request[Any, Any, Any]) -> str:
    """The client's address (uvicorn takes ``X-Forwarded-For`` from a proxy it trusts:
    ``FORWARDED_ALLOW_IPS``, loopback by default)."""
    return request.client.host if request.client is not None else "unknown"


def locked_out(request: Request[Any, Any, Any], wait_s: float) -> Response[str]:
    """The login page saying how long to wait; 429 with ``Retry-After``."""
    seconds = max(1, math.ceil(wait_s))
    wait = f"{math.ceil(seconds / 60)} min" if seconds >= 60 else f"{seconds} s"
    message = f"Too many failed logins for this username or from this address; try again in {wait}."
    return render(request, "login.html", 429, {"Retry-After": str(seconds)}, problem=message)


@get("/login", sync_to_thread=False)
def login_page(request: Request[Any, Any, Any],
               notice: FromQuery[str | None] = None) -> Response[str]:  # fmt: skip
    """The login form."""
    return render(request, "login.html", notice=notice)


@post("/login")
async def login(request: Request[Any, Any, Any], data: URLEncodedBody[LoginForm],
                resources: Res) -> Response[Any]:  # fmt: skip
    """Throttle, check the credentials, and open a session with the role they open."""
    address = client_address(request)
    attempt = await resources.login_throttle.attempt(data.username, address)
    if attempt.refused_s > 0:
        return locked_out(request, attempt.refused_s)
    role = resources.logins.check(data.username, data.password)
    if role is None:
        return _wrong_password(request, data.username, address, attempt)
    await resources.login_throttle.succeeded(data.username, address)
    return await _open_session(request, resources, data.username, role)


def _wrong_password(request: Request[Any, Any, Any], username: str, address: str,
                    attempt: Attempt) -> Response[str]:  # fmt: skip
    # The username is anyone's text: repr and a cut keep it one short line. Never the password.
    if attempt.locks_s > 0:
        log.warning("dashboard login: wrong password for %r from %s; locked for %.0f s",
                    username[:64], address, attempt.locks_s)  # fmt: skip
        return locked_out(request, attempt.locks_s)
    log.warning("dashboard login: wrong password for %r from %s", username[:64], address)
    return render(request, "login.html", 401, problem=WRONG)


async def _open_session(request: Request[Any, Any, Any], resources: Resources, username: str,
                        role: Role) -> Response[Any]:  # fmt: skip
    previous = session_of(request)
    if previous is not None:
        await resources.sessions.end(previous.digest)
    fingerprint = resources.logins.fingerprint(username, role)
    token, _ = await resources.sessions.open(username, role, fingerprint)
    log.info("dashboard login: %r (%s) from %s", username[:64], role, client_address(request))
    answer = Redirect(BASE, status_code=303)
    answer.set_cookie(session_cookie(request, token, resources.sessions.max_s))
    return answer


@post("/logout", guards=[require_viewer])
async def logout(request: Request[Any, Any, Any], data: URLEncodedBody[ActionForm],
                 resources: Res) -> Redirect:  # fmt: skip
    """End the session, here and in Redis: a copy of the cookie stops working too."""
    session = check_csrf(request, data.csrf)
    await resources.sessions.end(session.digest)
    return _to_login(request, "Logged out.")


def _to_login(request: Request[Any, Any, Any], notice: str) -> Redirect:
    answer = back(f"{BASE}/login", notice)
    answer.set_cookie(cleared_cookie(request))
    return answer


@get("/sessions", guards=[require_admin])
async def sessions_page(request: Request[Any, Any, Any], resources: Res,
                        notice: FromQuery[str | None] = None) -> Response[str]:  # fmt: skip
    """Every live session: who, which role, since when, until when at the latest."""
    current = session_of(request)
    rows = [
        {"user": s.user, "role": s.role, "mine": current is not None and s.digest == current.digest,
         "created": _when(s.created_ms), "ends": _when(s.ends_ms)}
        for s in await resources.sessions.list_sessions()
    ]  # fmt: skip
    users = sorted({str(row["user"]) for row in rows})
    return render(request, "sessions.html", nav="sessions", sessions=rows, users=users,
                  notice=notice)  # fmt: skip


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@post("/sessions/end", guards=[require_admin])
async def end_sessions(request: Request[Any, Any, Any], data: URLEncodedBody[EndForm],
                       resources: Res) -> Redirect:  # fmt: skip
    """Log out everywhere: every session of one login, or every session (yours included)."""
    session = check_csrf(request, data.csrf)
    if data.user:
        ended = await resources.sessions.end_user(data.user)
        notice = f"Ended {ended} sessions of {data.user}."
    else:
        ended = await resources.sessions.end_all()
        notice = f"Ended all {ended} sessions."
    log.warning("dashboard: %s ended %d sessions of %s", session.user[:64], ended,
                repr(data.user[:64]) if data.user else "every login")  # fmt: skip
    if not data.user or data.user == session.user:
        return _to_login(request, notice)  # this session was one of them
    return back(f"{BASE}/sessions", notice)
