"""How the dashboard answers: pages from templates, redirects with a notice, errors as pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.response import Redirect

from imagequeue_api.dashboard import views
from imagequeue_api.dashboard.access import cleared_cookie, cookie_presented, session_of
from imagequeue_api.problems import request_problem

BASE = "/admin/queues"
HTML = "text/html; charset=utf-8"
_ENV = views.templates()


def render(request: Request[Any, Any, Any] | None, name: str, status: int = 200,
           headers: dict[str, str] | None = None, **context: Any) -> Response[str]:  # fmt: skip
    """A page of the dashboard with the session's user, role and CSRF token."""
    session = session_of(request) if request is not None else None
    who = {"role": session.role, "user": session.user, "csrf": session.csrf} if session else {}
    text = _ENV.get_template(name).render(base=BASE, states=views.STATES, **who, **context)
    return Response(text, status_code=status, media_type=HTML, headers=headers)


def fragment(name: str, **context: Any) -> str:
    """A template rendered without the page around it."""
    return _ENV.get_template(name).render(base=BASE, states=views.STATES, **context)


def html_problem(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    """Dashboard errors as pages: 401 shows the login form (and drops a dead session
    cookie); the rest a short message, with the problem's headers (``Retry-After``)."""
    problem = request_problem(request, exc)
    if problem.status == 401:
        page = render(request, "login.html", 401, problem=problem.detail)
        if cookie_presented(request):
            page.set_cookie(cleared_cookie(request))
        return page
    return render(request, "base.html", problem.status, problem.headers, problem=problem.detail)


def back(to: str, notice: str) -> Redirect:
    """303 back to a dashboard page with a message."""
    return Redirect(f"{to}?{urlencode({'notice': notice})}", status_code=303)
