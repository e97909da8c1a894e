"""The life of a submission, the same for all five protocols: auth, parse, outcome, work.

A protocol module only reads its request into a :class:`GenRequest`, shapes its error
bodies (:class:`Wire`) and builds its success answer; everything that latency, faults,
concurrency and statistics need happens here, once.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from litestar import Request, Response

from loadtest.stub_ai.config import Outcome, StubConfig
from loadtest.stub_ai.faults import FaultPlan
from loadtest.stub_ai.generation import BadInputError, GenRequest
from loadtest.stub_ai.images import PNG, ImageStore, StoredImage, invalid_image, render_png
from loadtest.stub_ai.jobs import Job, JobStore
from loadtest.stub_ai.stats import Stats, Submission

HANG_LIMIT_S = 3600.0
AnyRequest = Request[Any, Any, Any]
Parser = Callable[[bytes], GenRequest]

# Outcomes answered at once, before any work is done.
_REFUSALS: dict[Outcome, tuple[int, str]] = {
    "429": (429, "rate limited by the stub, retry later"),
    "400": (400, "the stub rejected this request (injected fault)"),
    "503": (503, "the stub is at capacity, retry later"),
}
_FAILURE = (500, "the stub's GPU failed (injected fault)")


@dataclass(frozen=True)
class Wire:
    """How one protocol is named in the stats and how it shapes an error body."""

    protocol: str
    error: Callable[[int, str], Response[Any]]
    asynchronous: bool = False


class Admitted(NamedTuple):
    """A submission that passed auth and parsing, with its decided outcome."""

    request: GenRequest
    outcome: Outcome


class Generated(NamedTuple):
    """A finished synchronous generation: what was asked and what to serve."""

    request: GenRequest
    image: StoredImage


def image_response(image: StoredImage) -> Response[bytes]:
    """``image`` as a whole response body (the HTML error page included)."""
    return Response(image.body, media_type=image.media_type, status_code=200)


class Stub:
    """Everything one stub process shares: config and RNG, stats, images and jobs."""

    def __init__(self, config: StubConfig) -> None:
        self.plan = FaultPlan(config)
        self.stats = Stats()
        self.images = ImageStore()
        self.comfyui_jobs = JobStore(self.stats)
        self.runpod_jobs = JobStore(self.stats)

    def authorized(self, request: AnyRequest) -> bool:
        """True when no key is configured or the request carries ``Bearer <api_key>``."""
        key = self.plan.config.api_key
        if not key:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {key}".encode())

    def poll(self, request: AnyRequest, wire: Wire) -> Response[Any] | None:
        """Count a poll or download; the 401 answer when it is not authorized."""
        self.stats.poll(wire.protocol)
        if self.authorized(request):
            return None
        return wire.error(401, "missing or wrong API key")

    async def admit(
        self, request: AnyRequest, wire: Wire, parse: Parser
    ) -> Admitted | Response[Any]:
        """Check, parse and decide a submission; record it; answer it now if refused.

        An admitted submission is counted in flight; the caller must end that work.
        """
        request_id = request.headers.get("x-request-id")
        if not self.authorized(request):
            return self._refuse(
                wire, 401, "missing or wrong API key", request_id=request_id, outcome="unauthorized"
            )
        try:
            asked = parse(await request.body())
        except BadInputError as exc:
            return self._refuse(wire, 400, str(exc), request_id=request_id, outcome="rejected")
        if asked.seed < 0:
            asked = msgspec.structs.replace(asked, seed=self.plan.random_seed())
        outcome = self.plan.next_outcome(self.stats.in_flight)
        if outcome in _REFUSALS or (outcome == "error" and wire.asynchronous):
            status, message = _REFUSALS.get(outcome, _FAILURE)
            return self._refuse(
                wire, status, message, request_id=request_id, outcome=outcome, seed=asked.seed
            )
        answered = 200 if wire.asynchronous else _sync_status(outcome)
        self._record(wire, request_id, asked.seed, outcome, answered)
        self.stats.work_started()
        return Admitted(asked, outcome)

    async def generate(
        self, request: AnyRequest, wire: Wire, parse: Parser, *, by_url: bool = False
    ) -> Generated | Response[Any]:
        """A synchronous submission: the image to answer with, or the answer itself.

        The HTML error page replaces the whole answer unless the image is served ``by_url``.
        """
        admitted = await self.admit(request, wire, parse)
        if isinstance(admitted, Response):
            return admitted
        try:
            result = await self._work(request, wire, admitted)
        finally:
            self.stats.work_ended()
        if isinstance(result, Generated) and result.image.is_html and not by_url:
            return image_response(result.image)
        return result

    async def submit_job(
        self, request: AnyRequest, wire: Wire, parse: Parser, store: JobStore, endpoint: str = ""
    ) -> Job | Response[Any]:
        """An asynchronous submission: the started job, or the refusal to answer with."""
        admitted = await self.admit(request, wire, parse)
        if isinstance(admitted, Response):
            return admitted
        job = Job(request=admitted.request, outcome=admitted.outcome, endpoint=endpoint)
        return store.start(job, self._work_job)

    async def produce(self, asked: GenRequest, *, invalid: bool) -> StoredImage:
        """The image for ``asked``, or what a broken upstream serves instead."""
        kind = self.plan.config.invalid_kind
        if invalid and kind == "html":
            return invalid_image(b"", kind)
        # Drawing a 2048 px image takes ~0.1 s: off the event loop, so polls stay fast.
        png = await asyncio.to_thread(
            render_png, asked.prompt, asked.seed, asked.width, asked.height
        )
        return invalid_image(png, kind) if invalid else StoredImage(png, PNG)

    async def close(self) -> None:
        """Cancel the running jobs (shutdown)."""
        await self.comfyui_jobs.close()
        await self.runpod_jobs.close()

    async def _work(
        self, request: AnyRequest, wire: Wire, admitted: Admitted
    ) -> Generated | Response[Any]:
        hang = admitted.outcome == "hang"
        seconds = HANG_LIMIT_S if hang else self.plan.latency_s()
        if not await sleep_while_connected(request, seconds) or hang:
            # The client left (or an hour passed): nobody reads this answer.
            return wire.error(504, "the stub gave up")
        if admitted.outcome == "error":
            return wire.error(*_FAILURE)
        image = await self.produce(admitted.request, invalid=admitted.outcome == "invalid")
        return Generated(admitted.request, image)

    async def _work_job(self, job: Job) -> None:
        job.status = "IN_PROGRESS"
        if job.outcome == "hang":
            await asyncio.sleep(HANG_LIMIT_S)  # and then never completes
            return
        latency = self.plan.latency_s()
        await asyncio.sleep(latency)
        job.image = await self.produce(job.request, invalid=job.outcome == "invalid")
        job.execution_ms = round(latency * 1000)
        job.status = "COMPLETED"

    def _refuse(
        self,
        wire: Wire,
        status: int,
        message: str,
        *,
        request_id: str | None,
        outcome: str,
        seed: int | None = None,
    ) -> Response[Any]:
        self._record(wire, request_id, seed, outcome, status)
        response = wire.error(status, message)
        if status == 429:
            response.headers["Retry-After"] = self.plan.retry_after()
        return response

    def _record(
        self, wire: Wire, request_id: str | None, seed: int | None, outcome: str, status: int | None
    ) -> None:
        entry = Submission(time.time(), wire.protocol, status, outcome, request_id, seed)
        self.stats.submission(entry)


def _sync_status(outcome: Outcome) -> int | None:
    # Decided at arrival, so the recorded status is the one that will be answered.
    return {"error": 500, "hang": None}.get(outcome, 200)


async def sleep_while_connected(request: AnyRequest, seconds: float) -> bool:
    """Sleep ``seconds``; False as soon as the client disconnects instead."""
    gone = asyncio.create_task(_disconnected(request), name="stub-disconnect-watch")
    try:
        done, _ = await asyncio.wait({gone}, timeout=seconds)
    finally:
        gone.cancel()
    return not done


async def _disconnected(request: AnyRequest) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass
