"""Logging in and out of the dashboard.

A right login opens a new session (a new token every time: a token planted before the
login is worth nothing after it). Logout ends the session in Redis, so a copy of the
cookie is worth nothing either.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromQuery, URLEncodedBody
from litestar.response import Redirect

from imagequeue_api.dashboard.access import (
    check_csrf,
    cleared_cookie,
    require_viewer,
    session_cookie,
    session_of,
)
from imagequeue_api.dashboard.logins import Role
from imagequeue_api.dashboard.pages import BASE, back, render
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
    user: str = ""


class ActionForm(msgspec.Struct):
    """A form with only the CSRF token."""

    csrf: str = ""


def client_address(request: Request[Any, Any, Any]) -> str:
    """The client's address (uvicorn takes ``X-Forwarded-For`` from a proxy it trusts:
    ``FORWARDED_ALLOW_IPS``, loopback by default)."""
    return request.client.host if request.client is not None else "unknown"


@get("/login", sync_to_thread=False)
def login_page(request: Request[Any, Any, Any],
               notice: FromQuery[str | None] = None) -> Response[str]:  # fmt: skip
    """The login form."""
    return render(request, "login.html", notice=notice)


@post("/login")
async def login(request: Request[Any, Any, Any], data: URLEncodedBody[LoginForm],
                resources: Res) -> Response[Any]:  # fmt: skip
    """Check the credentials, and open a session with the role they open."""
    role = resources.logins.check(data.username, data.password)
    if role is None:
        return render(request, "login.html", 401, problem=WRONG)
    return await _open_session(request, resources, data.username, role)


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
