"""Upstream AI adapters; :func:`create_backend` picks one from the settings."""

from __future__ import annotations

import httpx

from imagequeue_common.errors import SettingsError
from imagequeue_common.settings import Settings
from imagequeue_worker.upstream.automatic1111 import Automatic1111Backend
from imagequeue_worker.upstream.base import ImageBackend, ImageRequest, Watch
from imagequeue_worker.upstream.comfyui import ComfyUIBackend
from imagequeue_worker.upstream.generic import GenericBackend
from imagequeue_worker.upstream.http import UpstreamHTTP, create_client, credentials
from imagequeue_worker.upstream.openai import OpenAIBackend
from imagequeue_worker.upstream.runpod import RunPodBackend

__all__ = ["ImageBackend", "ImageRequest", "Watch", "create_backend", "create_client"]


def create_backend(settings: Settings, client: httpx.AsyncClient) -> ImageBackend:
    """The adapter ``AI_GENERATION_BACKEND`` names, on ``client``."""
    url = settings.ai_generation_api_url
    if not url:
        raise SettingsError("AI_GENERATION_API_URL must be set to generate images")
    kind = settings.ai_generation_backend
    http = UpstreamHTTP(
        kind, client, settings.ai_max_response_bytes, origin=url, credentials=credentials(settings)
    )
    poll_s = settings.ai_poll_interval_ms / 1000
    if kind == "automatic1111":
        return Automatic1111Backend(http, url)
    if kind == "openai":
        return OpenAIBackend(http, url, settings.ai_generation_model)
    if kind == "comfyui":
        return ComfyUIBackend(http, url, settings.ai_generation_model, poll_s)
    if kind == "runpod":
        return RunPodBackend(http, url, poll_s, settings.ai_total_timeout_s)
    return GenericBackend(http, url)
