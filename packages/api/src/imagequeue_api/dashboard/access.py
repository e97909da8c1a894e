"""Who is asking, per dashboard request: the session behind the cookie, guards, CSRF.

:class:`SessionLoader` is mounted on the dashboard's router only, so no other route reads
the cookie. It looks the cookie's token up in Redis (:mod:`.sessions`) and treats anything
else — no cookie, garbage, an unknown, ended or expired token, a session whose password
changed — as no session: the login page, never a 500. Redis down: a 503 page. The cookie
is ``HttpOnly``, ``SameSite=Strict``, ``Path=/admin``, and ``Secure`` over https; every
action also carries the session's CSRF token in its form and must come from our own origin
when the browser says where it comes from.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.handlers import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from imagequeue_api.dashboard.sessions import Session, is_token
from imagequeue_api.problems import Problem

if TYPE_CHECKING:
    from imagequeue_api.resources import Resources

SESSION_COOKIE = "iq_admin"
COOKIE_PATH = "/admin"
_STATE_KEY = "iq_dashboard_session"
_PRESENTED_KEY = "iq_dashboard_cookie"


def _cookies(scope: Scope) -> list[tuple[str, str]]:
    """Every ``name=value`` of the raw ``Cookie`` headers, as sent (never raises)."""
    pairs = []
    for name, value in scope["headers"]:
        if name.lower() == b"cookie":
            for part in value.decode("latin-1").split(";"):
                key, _, text = part.strip().partition("=")
                pairs.append((key, text.strip('"')))
    return pairs


def presented_token(scope: Scope) -> str | None:
    """The first ``iq_admin`` cookie shaped like a token (malformed ones are ignored)."""
    return next((v for k, v in _cookies(scope) if k == SESSION_COOKIE and is_token(v)), None)


class SessionLoader(ASGIMiddleware):
    """Puts the request's live session (or ``None``) where :func:`session_of` finds it."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Load the session, then run the route."""
        scope["state"][_PRESENTED_KEY] = any(k == SESSION_COOKIE for k, _ in _cookies(scope))
        scope["state"][_STATE_KEY] = await _load(scope)
        await next_app(scope, receive, send)


async def _load(scope: Scope) -> Session | None:
    token = presented_token(scope)
    if token is None:
        return None
    resources: Resources = scope["litestar_app"].state.resources
    session = await resources.sessions.load(token)
    if session is None:
        return None
    if not resources.logins.still_valid(session.user, session.role, session.fingerprint):
        await resources.sessions.end(session.digest)  # opened under an old password
        return None
    return session


def session_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Session | None:
    """The request's live session, if any (``None`` outside the dashboard's router)."""
    found = connection.scope["state"].get(_STATE_KEY)
    return found if isinstance(found, Session) else None


def cookie_presented(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Whether the request carried an ``iq_admin`` cookie (live or not)."""
    return bool(connection.scope["state"].get(_PRESENTED_KEY))


def session_cookie(request: Request[Any, Any, Any], token: str, max_age_s: float) -> Cookie:
    """The cookie that carries ``token``."""
    return Cookie(key=SESSION_COOKIE, value=token, path=COOKIE_PATH, max_age=int(max_age_s),
                  httponly=True, samesite="strict",
                  secure=request.url.scheme == "https")  # fmt: skip


def cleared_cookie(request: Request[Any, Any, Any]) -> Cookie:
    """The cookie that makes the browser forget its session cookie."""
    return Cookie(key=SESSION_COOKIE, value="", path=COOKIE_PATH, max_age=0, httponly=True,
                  samesite="strict", secure=request.url.scheme == "https")  # fmt: skip


async def require_viewer(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: any logged-in role (401 otherwise)."""
    if session_of(connection) is None:
        raise Problem(401, "Log in to the dashboard first.", slug="login-required")


async def require_admin(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard for actions: the admin role (403 for a viewer) and a cross-site check."""
    session = session_of(connection)
    if session is None:
        raise Problem(401, "Log in to the dashboard first.", slug="login-required")
    if session.role != "admin":
        raise Problem(403, "This login may look but not act.", slug="read-only")
    origin = connection.headers.get("origin")
    host = connection.headers.get("host", "")
    if origin and origin.split("://", 1)[-1] != host:
        raise Problem(403, "Cross-site request refused.", slug="cross-site")


def check_csrf(connection: ASGIConnection[Any, Any, Any, Any], token: str) -> Session:
    """The form's CSRF token must be this session's (403 otherwise); returns the session."""
    session = session_of(connection)
    expected = session.csrf if session is not None else ""
    if session is None or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Problem(403, "Missing or wrong CSRF token; reload the page.", slug="csrf")
    return session
