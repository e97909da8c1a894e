"""``create_app``: the stub's routes and its one shared :class:`Stub`, wired in one place."""

from __future__ import annotations

from litestar import Litestar
from litestar.di import Provide

from imagequeue_common.runtime import freeze_startup_heap
from loadtest.stub_ai import control
from loadtest.stub_ai.config import StubConfig
from loadtest.stub_ai.protocols import automatic1111, comfyui, generic, openai, runpod
from loadtest.stub_ai.submissions import Stub


def create_app(config: StubConfig) -> Litestar:
    """A Litestar app speaking the five protocols plus ``/stub/*``, starting from ``config``."""
    stub = Stub(config)

    def provide_stub() -> Stub:
        return stub

    return Litestar(
        route_handlers=[
            *generic.ROUTES,
            *automatic1111.ROUTES,
            *openai.ROUTES,
            *comfyui.ROUTES,
            *runpod.ROUTES,
            *control.ROUTES,
        ],
        dependencies={"stub": Provide(provide_stub, sync_to_thread=False)},
        on_startup=[freeze_startup_heap],  # short GC pauses: arrival times stamped on time
        on_shutdown=[stub.close],
        openapi_config=None,
    )
