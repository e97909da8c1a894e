"""ComfyUI's API: queue a workflow, poll its history, download the output with ``/view``."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Response, get, post
from litestar.params import Parameter

from loadtest.stub_ai.generation import BadInputError, GenRequest, check_side, decode
from loadtest.stub_ai.jobs import Job
from loadtest.stub_ai.submissions import AnyRequest, Stub, Wire, image_response

OUTPUT_NODE = "9"  # the SaveImage node of ComfyUI's default workflow
Input = TypeVar("Input", str, int)


class Node(msgspec.Struct):
    """One workflow node; only a few class types matter to the stub."""

    class_type: str
    inputs: dict[str, Any] = {}


class PromptBody(msgspec.Struct):
    """``POST /prompt``: the workflow in API format."""

    prompt: dict[str, Node]
    client_id: str = ""


def parse_prompt(body: bytes) -> GenRequest:
    """Prompt text, seed and size from the workflow's nodes; defaults when absent."""
    graph = decode(body, PromptBody).prompt
    if not graph:
        raise BadInputError("prompt has no nodes")
    text = _first_input(graph, "CLIPTextEncode", "text", "")
    seed = _first_input(graph, "KSampler", "seed", 0)
    width = check_side("width", _first_input(graph, "EmptyLatentImage", "width", 512))
    height = check_side("height", _first_input(graph, "EmptyLatentImage", "height", 512))
    return GenRequest(text, "", width, height, seed)


def _first_input(graph: dict[str, Node], class_type: str, name: str, default: Input) -> Input:
    """The input of the first node of ``class_type``; ``default`` if absent or a link."""
    for node in graph.values():
        if node.class_type == class_type:
            value = node.inputs.get(name)
            # A link to another node's output is a list; bool would pass for int.
            if type(value) is type(default):
                return value
            return default
    return default


def error(status: int, message: str) -> Response[Any]:
    """ComfyUI's ``{"error": {...}, "node_errors": {}}``."""
    kind = "invalid_prompt" if status == 400 else "stub_error"
    body = {
        "error": {"type": kind, "message": message, "details": "", "extra_info": {}},
        "node_errors": {},
    }
    return Response(body, status_code=status)


WIRE = Wire("comfyui", error, asynchronous=True)


@post("/prompt", status_code=200)
async def queue_prompt(request: AnyRequest, stub: Stub) -> Response[Any]:
    """Queue the workflow: ``{"prompt_id", "number", "node_errors": {}}``."""
    job = await stub.submit_job(request, WIRE, parse_prompt, stub.comfyui_jobs)
    if isinstance(job, Response):
        return job
    return Response({"prompt_id": job.id, "number": job.number, "node_errors": {}})


@get("/history/{prompt_id:str}")
async def history(request: AnyRequest, stub: Stub, prompt_id: str) -> Response[Any]:
    """``{}`` until the prompt completed (or when unknown), then its outputs."""
    refused = stub.poll(request, WIRE)
    if refused is not None:
        return refused
    job = stub.comfyui_jobs.get(prompt_id)
    if job is None or job.status != "COMPLETED":
        return Response({})
    image = {"filename": _filename(job), "subfolder": "", "type": "output"}
    entry = {
        "outputs": {OUTPUT_NODE: {"images": [image]}},
        "status": {"status_str": "success", "completed": True, "messages": []},
    }
    return Response({prompt_id: entry})


@get("/view")
async def view(
    request: AnyRequest,
    stub: Stub,
    filename: str,
    subfolder: str = "",
    folder_type: Annotated[str, Parameter(query="type")] = "output",
) -> Response[Any]:
    """An output image by the name ``/history`` gave; 404 when unknown."""
    refused = stub.poll(request, WIRE)
    if refused is not None:
        return refused
    prompt_id, png = filename.removesuffix(".png"), filename.endswith(".png")
    job = stub.comfyui_jobs.get(prompt_id) if png else None
    if job is None or job.image is None or subfolder or folder_type != "output":
        return Response("404: Not Found", status_code=404, media_type="text/plain")
    return image_response(job.image)


def _filename(job: Job) -> str:
    return f"{job.id}.png"


ROUTES = [queue_prompt, history, view]
