"""What a worker process opens at start and closes at the end: store, HTTP client, pipeline.

Built in taskiq's WORKER_STARTUP event and kept on ``TaskiqState`` (no module globals);
tasks reach it through the :data:`Pipeline` dependency.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import httpx
from taskiq import Context, TaskiqDepends, TaskiqEvents, TaskiqState

from imagequeue_common.assets import AssetStore
from imagequeue_common.errors import TerminalJobError
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.settings import redact_url
from imagequeue_worker.looplag import LoopLag
from imagequeue_worker.pipeline import ImagePipeline
from imagequeue_worker.upstream import create_backend, create_client

if TYPE_CHECKING:
    from imagequeue_common.store import CharacterStore

log = logging.getLogger("imagequeue.worker")


def register_resources(broker: EngineBroker) -> None:
    """Open the pipeline's resources when a worker starts; close them when it stops."""
    settings = broker.settings

    async def startup(state: TaskiqState) -> None:
        state.pipeline = None
        if not settings.ai_generation_enabled:
            log.info("AI generation is disabled: generate_image jobs will be refused")
            return
        from imagequeue_common.store import open_store  # noqa: PLC0415 - only workers need it

        client = create_client(settings)
        backend = create_backend(settings, client)  # raises SettingsError without a URL
        store: CharacterStore = await open_store(settings.database_url)
        state.http_client, state.store = client, store
        assets = AssetStore(settings.assets_dir, settings.assets_url_prefix)
        lag = LoopLag()
        lag.start()
        state.pipeline = ImagePipeline(settings, store, assets, backend, broker.ledger, lag=lag)
        log.info("images from %s (%s) into %s; store %s",
                 redact_url(settings.ai_generation_api_url or ""), backend.name,
                 assets.root, redact_url(settings.database_url))  # fmt: skip

    async def shutdown(state: TaskiqState) -> None:
        if getattr(state, "pipeline", None) is None:
            return
        client: httpx.AsyncClient = state.http_client
        store: CharacterStore = state.store
        pipeline: ImagePipeline = state.pipeline
        await pipeline.lag.stop()
        await client.aclose()
        await store.close()
        state.pipeline = None

    broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, startup)
    broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, shutdown)


def current_pipeline(context: Annotated[Context, TaskiqDepends()]) -> ImagePipeline:
    """taskiq dependency: this worker's :class:`ImagePipeline`."""
    pipeline: ImagePipeline | None = getattr(context.state, "pipeline", None)
    if pipeline is None:
        raise TerminalJobError("AI generation is disabled on this worker (AI_GENERATION_ENABLED)")
    return pipeline


Pipeline = Annotated[ImagePipeline, TaskiqDepends(current_pipeline)]
