"""``/api/v1/poses`` and ``/api/v1/queue/stats``."""

from __future__ import annotations

import math

from litestar import Controller, get
from litestar.params import FromPath

from imagequeue_api.apikeys import ApiKey
from imagequeue_api.auth import Caller
from imagequeue_api.eta import drain_eta_seconds
from imagequeue_api.openapi_doc import errors
from imagequeue_api.problems import Problem
from imagequeue_api.resources import Res
from imagequeue_api.schemas import Envelope, PoseOut, QueueStatsOut
from imagequeue_common.errors import PoseNotFoundError

_ = ApiKey  # the dependency that authenticates every route below


class PoseController(Controller):
    """The poses a character can take."""

    path = "/api/v1/poses"
    tags = ["poses"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get(responses=errors())
    async def list_poses(self, caller: Caller, resources: Res) -> Envelope[list[PoseOut]]:
        """Every pose."""
        del caller
        return Envelope([PoseOut(p.id, p.name) for p in await resources.store.list_poses()])

    @get("/{pose_id:str}", responses=errors(400, 404))
    async def read(
        self, pose_id: FromPath[str], caller: Caller, resources: Res
    ) -> Envelope[PoseOut]:
        """One pose (404 when unknown)."""
        del caller
        try:
            pose = await resources.store.get_pose(pose_id)
        except PoseNotFoundError as exc:
            raise Problem(404, str(exc)) from None
        return Envelope(PoseOut(pose.id, pose.name))


@get("/api/v1/queue/stats", tags=["queue"], responses=errors())
async def queue_stats(caller: Caller, resources: Res) -> Envelope[QueueStatsOut]:
    """The seed's ``{waiting, active, completed, failed, delayed, total}``, jobs/min over
    the last minute, the live workers and slots, and what they give: the sustainable start
    rate, the mean job time and the time to drain the backlog."""
    del caller
    ledger, settings = resources.broker.ledger, resources.settings
    stats = await ledger.stats()
    recent = await ledger.throughput()
    workers = await ledger.live_workers()
    rates = await resources.rates.get()
    capacity = rates.start_rate if math.isfinite(rates.start_rate) else 0.0
    return Envelope(
        QueueStatsOut(
            waiting=stats.waiting,
            active=stats.active,
            completed=stats.completed,
            failed=stats.failed,
            delayed=stats.delayed,
            total=stats.total,
            cancelled=stats.cancelled,
            expired=stats.expired,
            paused=stats.paused,
            users_waiting=stats.users_waiting,
            users_active=stats.users_active,
            jobs_per_minute=round(recent.per_minute, 1),
            live_workers=len(workers),
            rate_limit_max=settings.rate_limit_max,
            rate_limit_duration_ms=settings.rate_limit_duration_ms,
            slots=rates.slots,
            mean_job_seconds=round(rates.mean_job_s, 2),
            capacity_per_second=round(capacity, 3),
            drain_eta_seconds=drain_eta_seconds(stats.waiting + stats.delayed, rates),
        )
    )
