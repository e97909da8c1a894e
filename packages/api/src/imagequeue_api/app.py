"""``create_app``: routes, dependencies, error mapping and the lifespan, wired in one place."""

from __future__ import annotations

import os
from pathlib import Path

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ControllerRouterHandler

from imagequeue_api import problems
from imagequeue_api.allow import fix_allow, whole_allow
from imagequeue_api.auth import provide_caller, provide_resources
from imagequeue_api.dashboard.routes import dashboard_router
from imagequeue_api.openapi_doc import finish_document
from imagequeue_api.resources import lifespan
from imagequeue_api.routes.catalog import PoseController, queue_stats
from imagequeue_api.routes.characters import CharacterController
from imagequeue_api.routes.generations import GenerationController
from imagequeue_api.routes.health import healthz, metrics, readyz
from imagequeue_api.routes.webhooks import WebhookController, rotate_webhook_secret
from imagequeue_api.schemas import EXACT_SCHEMAS
from imagequeue_api.sse import EVENT_SCHEMA
from imagequeue_api.static import static_files
from imagequeue_common.logs import configure_logging
from imagequeue_common.settings import Settings, load_settings

STREAMS = {"GET /api/v1/generations/{job_id}/events": EVENT_SCHEMA}
"""The event streams, each with the schema of one of its events."""


def create_app(settings: Settings) -> Litestar:
    """The imagequeue API for ``settings`` (nothing connects until the app starts)."""
    api = Router(
        path="/",
        route_handlers=[
            CharacterController,
            GenerationController,
            PoseController,
            queue_stats,
            rotate_webhook_secret,
            WebhookController,
        ],
        dependencies={"caller": Provide(provide_caller)},
        security=[{"bearer": []}],
    )
    handlers: list[ControllerRouterHandler] = [
        api, healthz, readyz, metrics, dashboard_router(settings)
    ]  # fmt: skip
    if settings.assets_url_prefix.startswith("/"):
        Path(settings.assets_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(static_files(settings.assets_url_prefix, settings.assets_dir, "assets"))
    return Litestar(
        route_handlers=handlers,
        dependencies={"resources": Provide(provide_resources, sync_to_thread=False)},
        exception_handlers={Exception: problems.handle},
        lifespan=[lifespan(settings)],
        on_startup=[
            finish_document(
                EXACT_SCHEMAS, {"GET /api/v1/generations/{job_id}/events": EVENT_SCHEMA}
            ),
            remember_allow,
        ],
        before_send=[fix_allow],
        request_max_body_size=settings.api_max_body_bytes,
        # Logging is ours (configure_logging: LOG_FORMAT, LOG_LEVEL), the same in every
        # process; Litestar's default would route each record through a queue thread.
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="imagequeue",
            version="0.1.0",
            path="/schema",
            components=Components(
                security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}
            ),
        ),
    )


def remember_allow(app: Litestar) -> None:
    """``on_startup``: the table :func:`fix_allow` reads (routes are final by now)."""
    app.state.allow_by_handler = whole_allow(app)


def app_from_env() -> Litestar:
    """Factory for uvicorn (``imagequeue_api.app:app_from_env``): settings from the environment.

    It runs in each API process (uvicorn spawns them), so logging is set up here as well.
    """
    settings = load_settings(os.environ)
    configure_logging(settings.log_format, settings.log_level)
    return create_app(settings)
