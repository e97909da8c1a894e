"""RunPod serverless: ``/run`` a job, poll ``/status``, ``/cancel`` it."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response, get, post

from loadtest.stub_ai.generation import GenRequest, decode
from loadtest.stub_ai.images import to_base64
from loadtest.stub_ai.jobs import Job
from loadtest.stub_ai.protocols.generic import GenericBody, error, to_request
from loadtest.stub_ai.submissions import AnyRequest, Stub, Wire, image_response


class RunBody(msgspec.Struct):
    """``POST /v2/{endpoint_id}/run``: the worker's input is the generic body."""

    input: GenericBody


def parse_run(body: bytes) -> GenRequest:
    """The job's ``input`` as a generation request."""
    return to_request(decode(body, RunBody).input)


WIRE = Wire("runpod", error, asynchronous=True)


@post("/v2/{endpoint_id:str}/run", status_code=200)
async def run(request: AnyRequest, stub: Stub, endpoint_id: str) -> Response[Any]:
    """Queue a job: ``{"id", "status": "IN_QUEUE"}``."""
    job = await stub.submit_job(request, WIRE, parse_run, stub.runpod_jobs, endpoint_id)
    if isinstance(job, Response):
        return job
    return Response({"id": job.id, "status": "IN_QUEUE"})


@get("/v2/{endpoint_id:str}/status/{job_id:str}")
async def status(request: AnyRequest, stub: Stub, endpoint_id: str, job_id: str) -> Response[Any]:
    """The job's status; when ``COMPLETED`` also its ``output`` and ``executionTime``."""
    refused = stub.poll(request, WIRE)
    if refused is not None:
        return refused
    job = _find(stub, endpoint_id, job_id)
    if job is None:
        return error(404, f"job {job_id!r} not found")
    body: dict[str, Any] = {"id": job.id, "status": job.status, "delayTime": 0}
    if job.status == "COMPLETED" and job.image is not None:
        if job.image.is_html:
            return image_response(job.image)  # a proxy's error page instead of the JSON
        body["executionTime"] = job.execution_ms
        body["output"] = {"image": to_base64(job.image.body), "seed": job.request.seed}
    return Response(body)


@post("/v2/{endpoint_id:str}/cancel/{job_id:str}", status_code=200)
async def cancel(request: AnyRequest, stub: Stub, endpoint_id: str, job_id: str) -> Response[Any]:
    """Stop a queued or running job: ``{"id", "status": "CANCELLED"}``.

    A job that already finished keeps (and reports) its status.
    """
    if not stub.authorized(request):
        return error(401, "missing or wrong API key")
    job = _find(stub, endpoint_id, job_id)
    if job is None:
        return error(404, f"job {job_id!r} not found")
    stub.runpod_jobs.cancel(job)
    return Response({"id": job.id, "status": job.status})


def _find(stub: Stub, endpoint_id: str, job_id: str) -> Job | None:
    job = stub.runpod_jobs.get(job_id)
    return job if job is not None and job.endpoint == endpoint_id else None


ROUTES = [run, status, cancel]
