"""The one way adapters talk HTTP: capped bodies, typed errors, Retry-After, credentials.

Every adapter goes through :class:`UpstreamHTTP`, so the error classes are the same for all
of them: timeouts, connection errors, 408, 429 and 5xx are retryable; other 4xx are
terminal; a body past ``AI_MAX_RESPONSE_BYTES`` is treated like a broken image.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import math
import re
import time
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
import msgspec

from imagequeue_common.errors import (
    AddressRefusedError,
    InvalidImageError,
    UpstreamRetryableError,
    UpstreamTerminalError,
)
from imagequeue_common.settings import Settings
from imagequeue_worker.upstream.addresses import AddressPolicy, host_and_port
from imagequeue_worker.upstream.reasons import keepable
from imagequeue_worker.upstream.transport import GuardedTransport

RETRYABLE_4XX = frozenset({408, 425, 429})
MAX_RETRY_AFTER_S = 3600.0
_ERROR_SNIPPET = 200
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]{0,31}")


class Answer(msgspec.Struct, frozen=True):
    """A successful (2xx) response, read whole."""

    status: int
    content_type: str
    body: bytes

    @property
    def is_json(self) -> bool:
        """True when the server says the body is JSON."""
        return "json" in self.content_type


def create_client(settings: Settings) -> httpx.AsyncClient:
    """The worker's one client: connection pool, timeouts, the SSRF guard, no cookies.

    It holds no credentials: :class:`UpstreamHTTP` adds them to requests for the upstream's
    own origin only. Redirects are not followed (a 3xx is an error answer), and every
    connection outside the upstream's host and port goes through
    :class:`~imagequeue_worker.upstream.addresses.AddressPolicy`.
    """
    timeout = httpx.Timeout(
        connect=settings.ai_connect_timeout_s,
        read=settings.ai_read_timeout_s,
        write=settings.ai_read_timeout_s,
        pool=settings.ai_total_timeout_s,
    )
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    # A jar whose policy accepts no cookie: none is kept, so none is ever sent anywhere.
    # (A CookieJar itself, not httpx.Cookies: the client copies those into a default jar.)
    cookies = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
    return httpx.AsyncClient(
        headers={"User-Agent": "imagequeue"},
        timeout=timeout,
        cookies=cookies,
        follow_redirects=False,
        transport=GuardedTransport(AddressPolicy.from_settings(settings), limits),
    )


def credentials(settings: Settings) -> dict[str, str]:
    """The API-key header for the upstream (none without a key)."""
    key = settings.ai_generation_api_key
    if not key:
        return {}
    header = settings.ai_generation_api_key_header
    return {header: f"Bearer {key}" if header.lower() == "authorization" else key}


def origin_of(url: httpx.URL) -> tuple[str, str, int]:
    """Scheme, host and port (default filled in): what "the same origin" compares."""
    return (url.scheme, *host_and_port(url))


class UpstreamHTTP:
    """An adapter's HTTP side, named for its backend in every error.

    ``credentials`` go only to ``origin`` (the upstream's ``AI_GENERATION_API_URL``): a
    result URL on any other host gets a request without them.
    """

    def __init__(
        self,
        backend: str,
        client: httpx.AsyncClient,
        max_bytes: int,
        *,
        origin: str | None = None,
        credentials: dict[str, str] | None = None,
    ) -> None:
        self.backend = backend
        self.client = client
        self.max_bytes = max_bytes
        self.origin = origin_of(httpx.URL(origin)) if origin else None
        self.credentials = credentials or {}

    async def send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        request_id: str = "",
    ) -> Answer:
        """One request; raises the typed upstream errors for anything but a 2xx."""
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL:
            target = httpx.URL()
        if not target.host:
            raise UpstreamTerminalError(self.backend, "refused a URL without a valid host")
        headers = {"X-Request-ID": request_id} if request_id else {}
        if self.origin is not None and origin_of(target) == self.origin:
            headers.update(self.credentials)
        try:
            async with self.client.stream(
                method, target, json=json, params=params, headers=headers
            ) as response:
                body = await self._read(response)
        except AddressRefusedError as exc:
            raise UpstreamTerminalError(self.backend, f"refused the URL: {exc}") from None
        except httpx.TimeoutException as exc:
            raise UpstreamRetryableError(self.backend, f"timeout ({type(exc).__name__})",
                                         kind="timeout") from None  # fmt: skip
        except httpx.TransportError as exc:
            raise UpstreamRetryableError(self.backend, f"connection error: {exc}",
                                         kind="connection") from None  # fmt: skip
        self._check_status(response, body, sent=_texts(json))
        return Answer(response.status_code, response.headers.get("content-type", ""), body)

    async def post_json(self, url: str, body: Any, *, request_id: str = "") -> Any:
        """POST ``body`` as JSON and decode the JSON answer."""
        answer = await self.send("POST", url, json=body, request_id=request_id)
        return self.decode_json(answer)

    async def get_json(self, url: str) -> Any:
        """GET ``url`` and decode the JSON answer."""
        return self.decode_json(await self.send("GET", url))

    def decode_json(self, answer: Answer) -> Any:
        """The JSON of ``answer``; a body that is not JSON is a broken answer (retryable)."""
        try:
            return msgspec.json.decode(answer.body)
        except msgspec.DecodeError:
            raise InvalidImageError(self.backend, "the answer is not JSON") from None

    async def image_from(self, value: object) -> bytes:
        """Image bytes from a JSON value: base64, a ``data:`` URL, or an http(s) URL.

        Any other URL scheme (``file:``, ``ftp:``, ``gopher:``) is refused: terminal.
        """
        if not isinstance(value, str) or not value:
            raise InvalidImageError(self.backend, "no image in the answer")
        scheme, colon, _ = value.partition(":")
        scheme = scheme.lower()
        if colon and _SCHEME.fullmatch(scheme):  # base64 never holds a ':'
            if scheme in ("http", "https"):
                return (await self.send("GET", value)).body
            if scheme != "data":
                raise UpstreamTerminalError(
                    self.backend, f"refused an image URL with scheme {scheme!r}: only http(s)"
                )
            value = value.partition(",")[2]
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidImageError(self.backend, "the image is not valid base64") from None

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise InvalidImageError(self.backend, f"answer larger than {self.max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                raise InvalidImageError(self.backend, f"answer larger than {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _check_status(self, response: httpx.Response, body: bytes, sent: list[str]) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        detail = f"HTTP {status}{_error_detail(body, sent)}"
        if 300 <= status < 400:
            detail += " (redirects are not followed)"
        if status >= 500 or status in RETRYABLE_4XX:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise UpstreamRetryableError(
                self.backend, detail, status=status, retry_after_s=retry_after
            )
        raise UpstreamTerminalError(self.backend, detail, status=status)


def parse_retry_after(raw: str | None, *, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds, fractions allowed, or an HTTP date)."""
    if not raw:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _error_detail(body: bytes, sent: list[str]) -> str:
    """A short reason from an error body: the JSON message when there is one, else nothing.

    Only a message field is kept, capped, and without what it echoes of the texts we
    ``sent`` (the prompt, above all): it ends up in the job's error and the worker's log.
    """
    try:
        data = msgspec.json.decode(body[:65536])
    except msgspec.DecodeError:
        return ""
    message: object = data
    for key in ("error", "message", "detail"):
        if isinstance(message, dict) and key in message:
            message = message[key]
    if isinstance(message, dict):
        message = message.get("message", "")
    if not isinstance(message, str) or not message:
        return ""
    return f": {keepable(message, sent, _ERROR_SNIPPET)}"


def _texts(body: Any) -> list[str]:
    """Every string in a JSON request body (what an error must not echo back)."""
    if isinstance(body, str):
        return [body]
    if isinstance(body, dict):
        return [text for value in body.values() for text in _texts(value)]
    if isinstance(body, list):
        return [text for value in body for text in _texts(value)]
    return []
