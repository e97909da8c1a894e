"""Who may use the dashboard: a login per role, a signed session cookie, a CSRF token.

Roles: ``admin`` (look and act) and ``viewer`` (look only). Credentials come from settings;
with no ``ADMIN_PASSWORD`` the dashboard is off (404), never open. The session cookie is
signed, HttpOnly and ``SameSite=Strict``; every action also carries the session's CSRF token
in its form and must come from our own origin when the browser says where it comes from.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any, Literal

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.middleware.session.client_side import CookieBackendConfig

from imagequeue_api.problems import Problem
from imagequeue_common.settings import Settings

Role = Literal["admin", "viewer"]
SESSION_COOKIE = "iq_admin"
SESSION_HOURS = 8


def session_config(settings: Settings) -> CookieBackendConfig:
    """Signed cookie sessions for ``/admin`` (one secret shared by every API process)."""
    secret = settings.session_secret or f"imagequeue-session:{settings.admin_password}"
    key = hashlib.sha256(secret.encode()).digest()
    return CookieBackendConfig(
        secret=key,
        key=SESSION_COOKIE,
        path="/admin",
        samesite="strict",
        httponly=True,
        max_age=SESSION_HOURS * 3600,
    )


def check_login(settings: Settings, username: str, password: str) -> Role | None:
    """The role these credentials open, compared in constant time."""
    logins: list[tuple[str, str, Role]] = [
        (settings.admin_username, settings.admin_password, "admin"),
        (settings.admin_readonly_username, settings.admin_readonly_password, "viewer"),
    ]
    role: Role | None = None
    for user, secret, granted in logins:
        if not secret:
            continue
        same_user = hmac.compare_digest(username.encode(), user.encode())
        same_secret = hmac.compare_digest(password.encode(), secret.encode())
        if same_user and same_secret:
            role = granted
    return role


def start_session(request: Request[Any, Any, Any], username: str, role: Role) -> None:
    """Log ``username`` in with ``role`` and a fresh CSRF token."""
    request.set_session({"user": username, "role": role, "csrf": secrets.token_urlsafe(24)})


def session_role(connection: ASGIConnection[Any, Any, Any, Any]) -> Role | None:
    """The logged-in role, if any."""
    session = connection.scope.get("session") or {}
    role = session.get("role") if isinstance(session, dict) else None
    return role if role in ("admin", "viewer") else None


def dashboard_on(settings: Settings) -> bool:
    """True when an admin password is configured."""
    return bool(settings.admin_password)


async def require_viewer(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard: any logged-in role (401 otherwise)."""
    if session_role(connection) is None:
        raise Problem(401, "Log in to the dashboard first.", slug="login-required")


async def require_admin(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Guard for actions: the admin role (403 for a viewer) and a cross-site check."""
    role = session_role(connection)
    if role is None:
        raise Problem(401, "Log in to the dashboard first.", slug="login-required")
    if role != "admin":
        raise Problem(403, "This login may look but not act.", slug="read-only")
    origin = connection.headers.get("origin")
    host = connection.headers.get("host", "")
    if origin and origin.split("://", 1)[-1] != host:
        raise Problem(403, "Cross-site request refused.", slug="cross-site")


def check_csrf(request: Request[Any, Any, Any], token: str) -> None:
    """The form's CSRF token must be this session's (403 otherwise)."""
    expected = str((request.session or {}).get("csrf", ""))
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Problem(403, "Missing or wrong CSRF token; reload the page.", slug="csrf")
