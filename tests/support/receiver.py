"""A webhook receiver on loopback that checks every request with the ``standardwebhooks``
verifier from PyPI (a third-party implementation of the spec) and answers as scripted."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

import msgspec
from standardwebhooks import Webhook


class Received(msgspec.Struct, frozen=True):
    """One request as the receiver saw it."""

    at: float
    """``time.monotonic()`` when it arrived."""
    msg_id: str
    verified: bool
    body: dict[str, Any]
    answered: int


class Receiver:
    """``answers``: the answer to each request in turn (``ok`` 204, ``fail`` 500 with a
    body, ``gone`` 410, ``redirect`` 302 to ``redirect_to``, ``hang`` for ``hang_s``), then
    ``ok``; or per event name through ``by_event`` (each event's own list)."""

    def __init__(self, secret: str, *, hang_s: float = 3.0) -> None:
        self.secret = secret
        self.hang_s = hang_s
        self.answers: list[str] = []
        self.by_event: dict[str, list[str]] = {}
        self.redirect_to = "http://169.254.169.254/latest/meta-data/"
        self.seen: list[Received] = []
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer_for(self, body: dict[str, Any]) -> str:
        with self._lock:
            queue = self.by_event.get(str(body.get("event")), self.answers)
            return queue.pop(0) if queue else "ok"

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(raw, headers)
                    verified = True
                except Exception:  # noqa: BLE001 - any refusal of the verifier
                    verified = False
                body = json.loads(raw) if raw else {}
                what = receiver._answer_for(body)
                if what == "hang":
                    time.sleep(receiver.hang_s)
                status = {"ok": 204, "fail": 500, "gone": 410, "redirect": 302, "hang": 204}[what]
                with receiver._lock:
                    receiver.seen.append(Received(time.monotonic(), headers.get("webhook-id", ""),
                                                  verified, body, status))  # fmt: skip
                answer = b"receiver is down" if what == "fail" else b""
                self.send_response(status)
                if what == "redirect":
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                del args

        return Handler

    def events(self) -> list[tuple[str, str, int]]:
        """(event, webhook-id, status answered) of every request, in arrival order."""
        with self._lock:
            return [(str(r.body.get("event")), r.msg_id, r.answered) for r in self.seen]

    def delivered(self) -> list[Received]:
        """The requests answered 2xx."""
        with self._lock:
            return [r for r in self.seen if 200 <= r.answered < 300]
