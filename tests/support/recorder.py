"""A plain HTTP server on loopback that answers from a route table and records what arrives.

For the tests where what an upstream (or a third-party host) *receives* is the point: the
headers of every request are kept, so a test can say which origin saw the API key.
"""

from __future__ import annotations

import http.server
import threading
from types import TracebackType

import msgspec


class Recorded(msgspec.Struct, frozen=True):
    """One request as it arrived: method, path (with query), headers (names lower case), body."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


class Route(msgspec.Struct, frozen=True):
    """What a path answers."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = msgspec.field(default_factory=dict)


class RecordingServer:
    """``ThreadingHTTPServer`` on ``127.0.0.1``, a free port; a context manager."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(0.05,),
            name=f"recorder-{self.port}",
            daemon=True,
        )

    def answer(
        self, path: str, body: bytes = b"", *, status: int = 200, **headers: str
    ) -> RecordingServer:
        """Answer ``path`` (any method) with ``body``; header names use ``_`` for ``-``."""
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        self.routes[path] = Route(status, body, named)
        return self

    def answer_json(self, path: str, data: object, **headers: str) -> RecordingServer:
        """Answer ``path`` with ``data`` as JSON."""
        named = {name.replace("_", "-"): value for name, value in headers.items()}
        named["Content-Type"] = "application/json"
        self.routes[path] = Route(200, msgspec.json.encode(data), named)
        return self

    def received(self, path: str) -> list[Recorded]:
        """The requests that arrived for ``path``."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def log_message(self, format: str, *args: object) -> None:
                del format, args  # quiet: the tests read ``requests`` instead

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                with server._lock:
                    server.requests.append(Recorded(self.command, self.path, headers, body))
                route = server.routes.get(self.path.split("?", 1)[0], Route(404, b"no route"))
                self.send_response(route.status)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(route.body)))
                self.end_headers()
                self.wfile.write(route.body)

        return Handler
