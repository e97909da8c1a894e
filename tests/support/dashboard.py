"""The dashboard over real HTTP (httpx against an :class:`ApiServer`): logins and forms."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from imagequeue_common.settings import Settings
from tests.support.api import ApiServer
from tests.support.procs import worker_env

BASE = "/admin/queues"
ADMIN = ("admin", "admin-password-over-http")
VIEWER = ("watcher", "viewer-password-over-http")
DEV_KEY = "dev-key-for-the-dashboard-tests"


def dashboard_server(settings: Settings, log_path: Path, **overrides: object) -> ApiServer:
    """An API process with the dashboard on (both logins) for ``settings``, started."""
    logins: dict[str, object] = {
        "admin_password": ADMIN[1], "admin_readonly_username": VIEWER[0],
        "admin_readonly_password": VIEWER[1], "api_dev_key": DEV_KEY,
    }  # fmt: skip
    env = worker_env(settings, **{**logins, **overrides})
    return ApiServer(env, log_path).start()


async def try_login(client: httpx.AsyncClient, who: tuple[str, str],
                    headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    """POST the login form as ``who``."""
    form = {"username": who[0], "password": who[1]}
    return await client.post(f"{BASE}/login", data=form, headers=headers)


async def login(client: httpx.AsyncClient, who: tuple[str, str]) -> str:
    """Log in as ``who`` (the cookie lands in ``client``); returns the page's CSRF token."""
    answer = await try_login(client, who)
    assert answer.status_code == 303, answer.text
    return csrf_of(await client.get(BASE))


def csrf_of(page: httpx.Response) -> str:
    """The CSRF token in a dashboard page's forms."""
    assert page.status_code == 200, page.text
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, "no CSRF token on the page"
    return found.group(1)


def is_login_page(answer: httpx.Response) -> bool:
    """A dashboard answer that asks to log in (401 with the login form)."""
    return answer.status_code == 401 and 'name="password"' in answer.text


def token_of(client: httpx.AsyncClient) -> str:
    """The session cookie ``client`` holds."""
    token = client.cookies.get("iq_admin")
    assert token, "no session cookie"
    return token
