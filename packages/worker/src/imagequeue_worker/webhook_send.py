"""One attempt at delivering a webhook: a signed POST to the receiver, judged.

The client connects only through the SSRF guard (``upstream.addresses``): the receiver's
host is resolved at delivery time, and loopback, private, link-local and metadata addresses
are refused unless the allow-list names the host or its network. Redirects are not
followed, timeouts are short, and at most :data:`ANSWER_KEPT` bytes of the answer are read.

What an attempt's outcome means for the delivery (``#16``'s schedule):

- ``delivered``: a 2xx;
- ``gone``: 410 — the receiver asks for no more: stop retrying;
- ``refused``: the address is not allowed (or not http(s)): stop, nothing was sent;
- ``retry``: any other status (a redirect included), a timeout, a connection error.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence
from typing import Literal

import httpx
import msgspec

from imagequeue_common.errors import AddressRefusedError
from imagequeue_common.webhook_signing import signed_headers
from imagequeue_worker.upstream.addresses import AddressPolicy, IPNetwork
from imagequeue_worker.upstream.transport import GuardedTransport

ANSWER_KEPT = 512
"""Bytes of a failed answer kept for the receiver's owner to see."""
Outcome = Literal["delivered", "gone", "refused", "retry", "disabled"]
"""``disabled``: not attempted, the endpoint is disabled (recorded by ``webhook_deliver``)."""


class Attempt(msgspec.Struct, frozen=True):
    """What one attempt found."""

    outcome: Outcome
    status: int | None
    """The receiver's HTTP status (None when no answer came)."""
    detail: str
    """Why, for a failure: the start of the answer, the error, the refused address."""
    elapsed_ms: int


def webhook_client(
    private_hosts: Iterable[str] = (), timeout_s: float = 10.0, connections: int = 100
) -> httpx.AsyncClient:
    """A client for deliveries: the SSRF guard with ``private_hosts`` (names, addresses or
    CIDR networks that may be private) allowed, no redirects, ``timeout_s`` per phase."""
    names: list[str] = []
    networks: list[IPNetwork] = []
    for entry in private_hosts:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.append(entry)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(
        transport=GuardedTransport(AddressPolicy(None, names, networks), limits),
        timeout=httpx.Timeout(timeout_s), follow_redirects=False,
        headers={"User-Agent": "imagequeue-webhooks"},
    )  # fmt: skip


async def send(
    client: httpx.AsyncClient, url: str, body: bytes, signing_secrets: Sequence[str],
    msg_id: str, *, timestamp: int | None = None,
) -> Attempt:  # fmt: skip
    """POST ``body`` (JSON) to ``url`` signed for this attempt; the outcome."""
    started = time.monotonic()

    def attempt(outcome: Outcome, status: int | None, detail: str) -> Attempt:
        return Attempt(outcome, status, detail, round((time.monotonic() - started) * 1000))

    target = httpx.URL(url)
    if target.scheme not in ("http", "https"):
        return attempt("refused", None, f"not an http(s) URL: {target.scheme!r}")
    stamp = int(time.time()) if timestamp is None else timestamp
    headers = {"Content-Type": "application/json",
               **signed_headers(signing_secrets, msg_id, stamp, body)}  # fmt: skip
    try:
        async with client.stream("POST", target, content=body, headers=headers) as answer:
            start = b""
            async for chunk in answer.aiter_raw():
                start += chunk
                if len(start) >= ANSWER_KEPT:
                    break
    except AddressRefusedError as exc:
        return attempt("refused", None, f"{exc.host} resolves to {exc.address}, not a public "
                       "address")  # fmt: skip
    except httpx.TimeoutException as exc:
        return attempt("retry", None, f"timed out ({type(exc).__name__})")
    except httpx.TransportError as exc:
        return attempt("retry", None, f"{type(exc).__name__}: {exc}"[:ANSWER_KEPT])
    status = answer.status_code
    text = start[:ANSWER_KEPT].decode("utf-8", "replace")
    if 200 <= status < 300:
        return attempt("delivered", status, "")
    if status == 410:
        return attempt("gone", status, text)
    if answer.is_redirect:
        where = answer.headers.get("location", "")[:200]
        return attempt("retry", status, f"redirect to {where!r} not followed")
    return attempt("retry", status, text)
