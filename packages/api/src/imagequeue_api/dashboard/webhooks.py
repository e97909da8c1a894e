"""The dashboard's webhook deliveries: pending, succeeded and failed ones with their
attempts, status codes and next attempt; a failed one can be sent again."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery, QueryParameter, URLEncodedBody
from litestar.response import Redirect

from imagequeue_api.dashboard.access import check_csrf, require_admin, require_viewer, session_of
from imagequeue_api.dashboard.account import ActionForm
from imagequeue_api.dashboard.pages import BASE, back, render
from imagequeue_api.problems import Problem
from imagequeue_api.resources import Res, Resources
from imagequeue_api.webhook_schemas import DeliveryOut
from imagequeue_api.webhook_views import delivery_views
from imagequeue_common.contracts import JobState
from imagequeue_common.errors import JobNotFoundError, JobStateError
from imagequeue_common.queue.admin import QueueAdmin
from imagequeue_common.queue.jobs import Job

PAGE = 25
KINDS: dict[str, tuple[JobState, ...]] = {
    "pending": (JobState.ACTIVE, JobState.DELAYED, JobState.WAITING),
    "succeeded": (JobState.COMPLETED,),
    "failed": (JobState.FAILED,),
}


def shown_url(url: str, admin: bool) -> str:
    """A receiver URL as a role may see it: whole for admins; scheme and host for viewers
    (a path may hold the receiver's own token)."""
    if admin:
        return url
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


async def job_deliveries(resources: Resources, job_id: str) -> list[DeliveryOut]:
    """One image job's deliveries, oldest first (for its page)."""
    ledger = resources.deliveries
    ids: list[str] = await ledger.client.zrange(ledger.keys.by_ref(job_id), 0, 99)  # type: ignore[assignment]
    return await delivery_views(resources, await QueueAdmin(ledger).load(ids))


@get("/webhooks", guards=[require_viewer])
async def deliveries_page(
    request: Request[Any, Any, Any], resources: Res,
    kind: Annotated[str, QueryParameter(name="state")] = "pending",
    page: Annotated[int, QueryParameter(ge=1, le=100_000)] = 1,
    notice: FromQuery[str | None] = None,
) -> Response[str]:  # fmt: skip
    """Deliveries of one kind: pending (running, retrying, waiting), succeeded or failed,
    newest first for the finished ones."""
    if kind not in KINDS:
        raise Problem(404, f"No delivery state {kind!r}.")
    admin = QueueAdmin(resources.deliveries)
    stats = await resources.deliveries.stats()
    counts = {name: sum(getattr(stats, s.value) for s in states)
              for name, states in KINDS.items()}  # fmt: skip
    jobs: list[Job] = []
    for state in KINDS[kind]:
        jobs += await admin.list_jobs(state, (page - 1) * PAGE, PAGE + 1)
    has_more, jobs = len(jobs) > PAGE, jobs[:PAGE]
    session = session_of(request)
    is_admin = session is not None and session.role == "admin"
    deliveries = await delivery_views(resources, jobs)
    outcomes = await resources.webhooks.outcomes()

    def page_url(n: int) -> str:
        return f"{BASE}/webhooks?{urlencode({'state': kind, 'page': n})}"

    return render(request, "webhooks.html", nav="webhooks", kind=kind, counts=counts,
                  deliveries=deliveries, page=page, has_more=has_more, page_url=page_url,
                  notice=notice, outcomes=outcomes,
                  show_url=lambda url: shown_url(url, is_admin))  # fmt: skip


@post("/webhooks/{msg_id:str}/retry", guards=[require_admin])
async def retry_delivery(request: Request[Any, Any, Any], msg_id: FromPath[str],
                         data: URLEncodedBody[ActionForm], resources: Res) -> Redirect:  # fmt: skip
    """Send a failed delivery again: back to waiting, its attempts reset (the same
    ``webhook-id``, so a receiver that had it after all can drop it)."""
    check_csrf(request, data.csrf)
    try:
        await resources.deliveries.retry_failed(msg_id)
    except JobNotFoundError:
        raise Problem(404, f"No delivery {msg_id!r} (never made, or cleaned).") from None
    except JobStateError as exc:
        raise Problem(409, str(exc)) from None
    return back(f"{BASE}/webhooks", f"Delivery {msg_id} sent back to waiting.")
