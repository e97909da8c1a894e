"""Serving the API from several processes, each with its own listening socket.

Each process binds its own socket with ``SO_REUSEPORT``, and the kernel spreads new
connections evenly across the processes that listen. The parent announces when *all* of
them accept connections ("all N API processes ready"): a client that opens its connections
as soon as the first process answers — as the API benchmark did with uvicorn's
``workers=N`` — puts every long-lived connection on that one process (seen here: 1000 wrk
connections, one process at full load and the other idle). The parent restarts a process
that dies, stops them all on SIGINT/SIGTERM, and stops when one cannot start at all.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import FrameType

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.server import HANDLED_SIGNALS

from imagequeue_common.settings import Settings

log = logging.getLogger("imagequeue.api")
APP = "imagequeue_api.app:app_from_env"
CHECK_S = 0.2


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other processes may bind too (SO_REUSEPORT)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.set_inheritable(True)
    return sock


def port_in_use(host: str, port: int) -> bool:
    """True when something accepts connections on ``host:port`` already.

    Binding alone cannot tell: our sockets use ``SO_REUSEPORT``, so a second imagequeue API
    (a ``just up`` left running) would bind the same port and the kernel would quietly
    share the connections between the two.
    """
    target = "127.0.0.1" if host in ("", "0.0.0.0") else ("::1" if host == "::" else host)  # noqa: S104
    try:
        with socket.create_connection((target, port), timeout=0.5):
            return True
    except OSError:
        return False


def _config(settings: Settings) -> uvicorn.Config:
    return uvicorn.Config(
        APP,
        factory=True,
        host=settings.api_host,
        port=settings.api_port,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, telling the parent when it accepts connections, and stopping on
    SIGINT/SIGTERM the way a service should: gracefully, then exit 0.

    Stock uvicorn re-raises the caught signal once it has shut down (a ``KeyboardInterrupt``
    traceback for SIGINT, exit status -15 for SIGTERM) and aborts the graceful shutdown on a
    second SIGINT. A terminal's Ctrl-C under ``uv run`` arrives twice (the terminal's, and
    uv's forwarded copy) within milliseconds, so the second must not cut the open requests
    short; ``timeout_graceful_shutdown`` bounds the stop instead.
    """

    def __init__(self, config: uvicorn.Config, ready: Event | None) -> None:
        super().__init__(config)
        self._ready = ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._ready is not None:
            self._ready.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.signal(signum, self.handle_exit) for signum in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        del frame
        if not self.should_exit:
            log.info("%s: stopping once open requests are answered", signal.Signals(sig).name)
        self.should_exit = True


def serve_one(settings: Settings, ready: Event | None = None) -> None:
    """One API process on its own SO_REUSEPORT socket (the target of each child); exits with
    uvicorn's ``STARTUP_FAILURE`` code when the app cannot start."""
    sock = listening_socket(settings.api_host, settings.api_port)
    server = _Server(_config(settings), ready)
    server.run(sockets=[sock])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def serve(settings: Settings) -> int:
    """Run ``API_PROCESSES`` API processes until SIGINT/SIGTERM; 0 on a clean stop, 3 when a
    process could not start (bad settings, an unreachable store: restarting cannot help)."""
    if settings.api_processes == 1:
        serve_one(settings)
        return 0
    # Bound here first so a taken port fails at once, in the parent, with one clear error.
    probe = listening_socket(settings.api_host, settings.api_port)
    context = multiprocessing.get_context("spawn")
    stopping = threading.Event()

    def start() -> tuple[BaseProcess, Event]:
        ready = context.Event()
        child = context.Process(target=serve_one, args=(settings, ready), name="imagequeue-api")
        child.start()
        return child, ready

    def stop(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("stopping %d API processes (signal %d)", len(children), signum)
        stopping.set()

    children = [start() for _ in range(settings.api_processes)]
    probe.close()  # the children hold their own sockets now
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    code, announced = 0, False
    try:
        while not stopping.wait(CHECK_S):
            if not announced and all(ready.is_set() for _, ready in children):
                # Connections opened before this may all sit on the processes up first.
                log.info("all %d API processes ready", len(children))
                announced = True
            for i, (child, _) in enumerate(children):
                if child.is_alive():
                    continue
                if child.exitcode == STARTUP_FAILURE:
                    log.error("an API process could not start; stopping")
                    code = STARTUP_FAILURE
                    stopping.set()
                    break
                log.error("API process %s exited (%s); starting another", child.pid,
                          child.exitcode)  # fmt: skip
                children[i] = start()
    finally:
        for child, _ in children:
            if child.is_alive() and child.pid is not None:
                child.terminate()  # SIGTERM: uvicorn's graceful shutdown
        for child, _ in children:
            child.join(30)
            if child.is_alive():
                child.kill()
                child.join()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code
