"""``/admin/queues``: the queue dashboard — pages, live JSON, and the actions behind a login."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.params import FromPath, FromQuery, QueryParameter, URLEncodedBody
from litestar.response import Redirect

from imagequeue_api.dashboard import account, views, webhooks
from imagequeue_api.dashboard.access import (
    SessionLoader,
    check_csrf,
    require_admin,
    require_viewer,
    session_of,
)
from imagequeue_api.dashboard.account import ActionForm
from imagequeue_api.dashboard.logins import dashboard_on
from imagequeue_api.dashboard.pages import BASE, HTML, back, fragment, html_problem, render
from imagequeue_api.problems import Problem
from imagequeue_api.resources import Res, Resources
from imagequeue_api.static import static_files
from imagequeue_api.views import result_url
from imagequeue_common.contracts import JobState
from imagequeue_common.errors import JobNotFoundError
from imagequeue_common.queue.admin import QueueAdmin
from imagequeue_common.settings import Settings

PAGE = 25


class CleanForm(msgspec.Struct):
    """Clean finished jobs of one kind older than an age."""

    csrf: str = ""
    which: str = "completed"
    age: int = 86_400_000


def admin_of(resources: Resources) -> QueueAdmin:
    """The engine's admin view of this process's queue."""
    return QueueAdmin(resources.broker.ledger)


@get("/", guards=[require_viewer])
async def overview_page(request: Request[Any, Any, Any], resources: Res,
                        notice: FromQuery[str | None] = None) -> Response[str]:  # fmt: skip
    """Counts, throughput, rate limit, busiest users, workers, Redis, paused or running."""
    viewer = _role(request) != "admin"
    data = await views.overview(admin_of(resources), fragment, viewer=viewer)
    return render(request, "overview.html", nav="overview", overview=data, notice=notice,
                  queue=resources.settings.queue_name, viewer=viewer)  # fmt: skip


@get("/api/overview", guards=[require_viewer])
async def overview_json(request: Request[Any, Any, Any], resources: Res) -> dict[str, Any]:
    """The overview's live numbers."""
    viewer = _role(request) != "admin"
    data = await views.overview(admin_of(resources), fragment, viewer=viewer)
    hidden = ("workers", "redis", "minutes_json", "users")
    return {k: v for k, v in data.items() if k not in hidden}


@get("/jobs", guards=[require_viewer])
async def jobs_page(  # noqa: PLR0917 - Litestar passes query parameters by name
    request: Request[Any, Any, Any],
    resources: Res,
    state_name: Annotated[str, QueryParameter(name="state")] = "waiting",
    q: Annotated[str, QueryParameter(max_length=200)] = "",
    page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    fragment_only: Annotated[bool, QueryParameter(name="fragment")] = False,
    notice: FromQuery[str | None] = None,
) -> Response[str]:
    """A state's jobs (claim order for waiting, newest first for finished), or a search."""
    admin = admin_of(resources)
    total: int | None = None
    q = q.strip()
    if q:
        found = await admin.search(q, limit=PAGE * page + 1)
        jobs = found[PAGE * (page - 1) : PAGE * page]
        has_more, title, live = len(found) > PAGE * page, f"Search: {q}", False
    else:
        if state_name not in views.STATES:
            raise Problem(404, f"No state {state_name!r}.")
        jobs = await admin.list_jobs(JobState(state_name), (page - 1) * PAGE, PAGE + 1)
        has_more, jobs = len(jobs) > PAGE, jobs[:PAGE]
        total = getattr(await resources.broker.ledger.stats(), state_name)
        title, live = f"{state_name.capitalize()} jobs", True
    context: dict[str, Any] = {"jobs": jobs, "viewer": _role(request) != "admin"}
    if fragment_only:
        return Response(fragment("_rows.html", **context), media_type=HTML)

    def page_url(n: int) -> str:
        return f"{BASE}/jobs?{urlencode({'state': state_name, 'q': q, 'page': n})}"

    return render(
        request, "jobs.html", nav=None if q else state_name, state=state_name, q=q, page=page,
        has_more=has_more, total=total, pages=max(1, math.ceil((total or 0) / PAGE)),
        title=title, live=live, page_url=page_url, notice=notice,
        fragment_url=f"{BASE}/jobs?{urlencode({'state': state_name, 'page': page, 'fragment': 1})}",
        **context,
    )  # fmt: skip


@get("/jobs/{job_id:str}", guards=[require_viewer])
async def job_page(request: Request[Any, Any, Any], job_id: FromPath[str], resources: Res,
                   notice: FromQuery[str | None] = None) -> Response[str]:  # fmt: skip
    """One job: payload, character, pose, attempts, timeline, live progress, error, image."""
    admin = admin_of(resources)
    job = await _job(admin, job_id)
    payload = views.job_payload(job)
    is_admin = _role(request) == "admin"
    prompt = await views.job_prompt(resources.store, payload) if is_admin else ""
    if not is_admin:  # prompts and user ids are for admins only
        payload = {**payload, "user_id": "(admins only)"}
    hidden = ("job",) if is_admin else ("job", "user")
    timeline = [
        {"at_ms": e.at_ms, "event": e.event,
         "detail": ", ".join(f"{k}={v}" for k, v in e.fields.items() if k not in hidden)[:120]}
        for e in await admin.timeline(job_id)
    ]  # fmt: skip
    return render(
        request, "job.html", job=job, payload=payload, prompt=prompt, timeline=timeline,
        payload_json=msgspec.json.format(msgspec.json.encode(payload)).decode(),
        result_url=result_url(job), notice=notice, error=views.operator_error(job),
        deliveries=await webhooks.job_deliveries(resources, job_id),
    )  # fmt: skip


@get("/api/jobs/{job_id:str}", guards=[require_viewer])
async def job_json(job_id: FromPath[str], resources: Res) -> dict[str, Any]:
    """A job's live fields."""
    return views.job_json(await _job(admin_of(resources), job_id))


def _role(request: Request[Any, Any, Any]) -> str | None:
    session = session_of(request)
    return session.role if session is not None else None


async def _job(admin: QueueAdmin, job_id: str) -> Any:
    try:
        return await admin.ledger.get_job(job_id)
    except JobNotFoundError:
        raise Problem(404, f"No job {job_id!r} (never queued, or cleaned).") from None


@post("/jobs/{job_id:str}/{action:str}", guards=[require_admin])
async def job_action(request: Request[Any, Any, Any], job_id: FromPath[str],
                     action: FromPath[str], data: URLEncodedBody[ActionForm],
                     resources: Res) -> Redirect:  # fmt: skip
    """Retry, promote (run now), cancel or remove one job."""
    check_csrf(request, data.csrf)
    admin, ledger = admin_of(resources), resources.broker.ledger
    if action == "retry":
        await ledger.retry_failed(job_id)
        notice = "Sent back to waiting with its attempts reset."
    elif action == "promote":
        await admin.promote(job_id)
        notice = "Moved to waiting: it runs next in its priority."
    elif action == "cancel":
        outcome = await ledger.cancel(job_id)
        notice = "Cancelled." if outcome == "cancelled" else "Cancel requested: it stops soon."
    elif action == "remove":
        await admin.remove(job_id)
        return back(BASE, f"Removed job {job_id}.")
    else:
        raise Problem(404, f"No action {action!r}.")
    return back(f"{BASE}/jobs/{job_id}", notice)


@post("/actions/{action:str}", guards=[require_admin])
async def queue_action(request: Request[Any, Any, Any], action: FromPath[str],
                       data: URLEncodedBody[CleanForm], resources: Res) -> Redirect:  # fmt: skip
    """Pause, resume, retry all failed, or clean finished jobs older than an age."""
    check_csrf(request, data.csrf)
    ledger = resources.broker.ledger
    if action == "pause":
        await ledger.pause()
        notice = "Paused: workers stop claiming; active jobs finish."
    elif action == "resume":
        await ledger.resume()
        notice = "Resumed."
    elif action == "retry-all":
        notice = f"Sent {await ledger.retry_all_failed()} failed jobs back to waiting."
    elif action == "clean":
        notice = await _clean(resources, data)
    else:
        raise Problem(404, f"No action {action!r}.")
    return back(BASE, notice)


async def _clean(resources: Resources, form: CleanForm) -> str:
    if form.which not in ("completed", "failed") or form.age < 0:
        raise Problem(400, "Clean completed or failed jobs, older than a positive age.")
    forever = 10**12  # ms (30 years): the kind not being cleaned is kept
    keep = {"keep_completed_ms": forever, "keep_failed_ms": forever}
    keep[f"keep_{form.which}_ms"] = form.age
    report = await resources.broker.ledger.clean(**keep)
    removed = report.completed if form.which == "completed" else report.failed
    return f"Removed {removed} {form.which} jobs older than {form.age // 1000} s."


def dashboard_router(settings: Settings) -> Router:
    """The dashboard under ``/admin/queues`` (every page 404 when it is off)."""
    handlers: list[Any] = [
        account.login_page, account.login, account.logout, account.sessions_page,
        account.end_sessions, overview_page, overview_json, jobs_page, job_page, job_json,
        job_action, queue_action, webhooks.deliveries_page, webhooks.retry_delivery,
    ]  # fmt: skip
    if dashboard_on(settings):
        handlers.append(
            static_files("/static", Path(__file__).parent / "static", "dashboard-static")
        )
    else:
        handlers = [_off]
    return Router(
        path=BASE,
        route_handlers=handlers,
        # Sessions are read here only: no other route looks at the cookie, whatever it holds.
        middleware=[SessionLoader()] if dashboard_on(settings) else [],
        exception_handlers={Exception: html_problem},
        include_in_schema=False,
    )


@get(["/", "/{rest:path}"], sync_to_thread=False)
def _off() -> Response[str]:
    return render(None, "base.html", 404, problem="The dashboard is off: set ADMIN_PASSWORD.")
