"""``python -m loadtest.receiver``: the load test's webhook receiver, a process of its own.

Every POST to ``/hook/<user id>`` is verified with the ``standardwebhooks`` package (a
third-party implementation of the spec) against that user's secret (``--secrets``: a JSON
file of user id → secret, read again when a user is not known yet), answered 204, and
written as one JSON line to ``--out``: when it arrived (``time.time()``), its
``webhook-id``, the user, the job, the event, whether it verified, the job's ``finishedAt``.
``GET /stats`` answers the counts so far (the load test waits on it).
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading
import time
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook


class Receiver:
    """The secrets, the output file and the counts, shared by the handler threads."""

    def __init__(self, secrets_path: Path, out_path: Path) -> None:
        self.secrets_path = secrets_path
        self.out = out_path.open("a", encoding="utf-8")
        self.lock = threading.Lock()
        self.secrets: dict[str, str] = {}
        self.received = 0
        self.unverified = 0
        self.completed_ids: set[str] = set()

    def secret(self, user: str) -> str | None:
        with self.lock:
            if user not in self.secrets and self.secrets_path.exists():
                self.secrets = json.loads(self.secrets_path.read_text())
            return self.secrets.get(user)

    def note(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.received += 1
            self.unverified += not record["verified"]
            if record["event"] == "completed":
                self.completed_ids.add(record["msg_id"])
            self.out.write(json.dumps(record) + "\n")
            self.out.flush()

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {"received": self.received, "unverified": self.unverified,
                    "completed_unique": len(self.completed_ids)}  # fmt: skip


def handler(receiver: Receiver) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            at = time.time()
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            user = self.path.rsplit("/", 1)[-1]
            secret = receiver.secret(user)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                verified = secret is not None and bool(Webhook(secret).verify(raw, headers))
            except Exception:  # noqa: BLE001 - any refusal of the verifier
                verified = False
            body = json.loads(raw) if raw else {}
            record = {"at": at, "msg_id": headers.get("webhook-id", ""), "user": user,
                      "job": body.get("id"), "event": body.get("event"), "verified": verified,
                      "finished_at": body.get("finishedAt")}  # fmt: skip
            receiver.note(record)
            self._answer(204, b"")

        def do_GET(self) -> None:
            self._answer(200, json.dumps(receiver.stats()).encode())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            del args

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m loadtest.receiver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secrets", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    receiver = Receiver(args.secrets, args.out)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler(receiver))
    server.daemon_threads = True
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
