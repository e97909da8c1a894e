"""One webhook attempt against real receivers on loopback that check every request with
the ``standardwebhooks`` verifier from PyPI: what each answer means, and that the SSRF
guard, redirects and timeouts keep requests from where they must not go."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from typing import ClassVar

import pytest
from standardwebhooks import Webhook

from imagequeue_common.webhook_signing import new_secret
from imagequeue_worker.webhook_send import ANSWER_KEPT, send, webhook_client

SECRET = new_secret()
BODY = b'{"event":"completed","id":"img-1"}'


class Receiver(http.server.BaseHTTPRequestHandler):
    """Answers as ``script`` says, one entry per request (``ok`` when it runs out)."""

    script: ClassVar[list[str]] = []
    seen: ClassVar[list[tuple[str, bool]]] = []
    """(webhook-id, whether the signature verified) of every request received."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            Webhook(SECRET).verify(body, headers)
            verified = True
        except Exception:  # noqa: BLE001 - any refusal of the verifier
            verified = False
        self.seen.append((headers.get("webhook-id", ""), verified))
        what = self.script.pop(0) if self.script else "ok"
        if what == "hang":
            time.sleep(2)
        status = {"ok": 204, "fail": 500, "gone": 410, "redirect": 302, "big": 503}[what]
        answer = b"x" * 5000 if what == "big" else b"boom" if what == "fail" else b""
        self.send_response(status)
        if what == "redirect":
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: object) -> None:
        del args


@pytest.fixture
def receiver() -> Iterator[str]:
    Receiver.script, Receiver.seen = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("script", "outcome", "status", "detail"),
    [
        ("ok", "delivered", 204, ""),
        ("fail", "retry", 500, "boom"),
        ("gone", "gone", 410, ""),
        ("redirect", "retry", 302, "redirect to 'http://169.254.169.254/latest/meta-data/'"),
    ],
)
async def test_each_answer_means_what_it_says(
    receiver: str, script: str, outcome: str, status: int, detail: str
) -> None:
    Receiver.script = [script]
    async with webhook_client(["127.0.0.1"]) as client:
        attempt = await send(client, receiver, BODY, [SECRET], "msg_1")
    assert (attempt.outcome, attempt.status) == (outcome, status)
    assert attempt.detail.startswith(detail)
    assert Receiver.seen == [("msg_1", True)]  # signed, verified, and sent once (no redirect)


async def test_an_answer_is_kept_short_and_a_hang_times_out(receiver: str) -> None:
    Receiver.script = ["big", "hang"]
    async with webhook_client(["127.0.0.0/8"], timeout_s=0.3) as client:
        big = await send(client, receiver, BODY, [SECRET], "msg_2")
        hung = await send(client, receiver, BODY, [SECRET], "msg_2")
    assert (big.outcome, big.status, len(big.detail)) == ("retry", 503, ANSWER_KEPT)
    assert (hung.outcome, hung.status) == ("retry", None)
    assert hung.detail.startswith("timed out")
    assert hung.elapsed_ms < 1900  # the receiver hangs for 2 s: the timeout ended it
    # The same delivery keeps its id across attempts, so the receiver can drop duplicates.
    assert [i for i, _ in Receiver.seen] == ["msg_2", "msg_2"]


async def test_private_addresses_are_refused_and_never_reached(receiver: str) -> None:
    async with webhook_client() as client:  # no allow-list
        refused = await send(client, receiver, BODY, [SECRET], "msg_3")
        localhost = await send(client, receiver.replace("127.0.0.1", "localhost"), BODY,
                               [SECRET], "msg_3")  # fmt: skip
        metadata = await send(client, "http://169.254.169.254/latest", BODY, [SECRET], "msg_3")
        ftp = await send(client, "ftp://example.com/x", BODY, [SECRET], "msg_3")
    for attempt in (refused, localhost, metadata):
        assert (attempt.outcome, attempt.status) == ("refused", None)
        assert "not a public address" in attempt.detail
    assert (ftp.outcome, ftp.detail) == ("refused", "not an http(s) URL: 'ftp'")
    assert Receiver.seen == []
