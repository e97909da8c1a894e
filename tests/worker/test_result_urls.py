"""Result URLs: the API key goes to the upstream's origin only, and the SSRF guard refuses
URLs that reach private addresses (the adapters run on real HTTP servers on loopback).

Addresses off loopback (10.x, 169.254.169.254, ...) are checked one level down, on the
guard's network backend with a stand-in connector, so no test ever sends a packet there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

import httpcore
import httpx
import msgspec
import pytest

from imagequeue_common.errors import AddressRefusedError, SettingsError, UpstreamTerminalError
from imagequeue_common.images import check_image
from imagequeue_common.settings import Settings, load_settings, replace
from imagequeue_worker.upstream import ImageBackend, ImageRequest, create_backend, create_client
from imagequeue_worker.upstream.addresses import AddressPolicy, GuardedNetworkBackend, is_public
from loadtest.stub_ai.images import render_png
from tests.support.recorder import RecordingServer

REQUEST = ImageRequest(prompt="Aria Voss", negative_prompt="", width=64, height=64, seed=1,
                       quality="hq", request_id="img-ssrf-1")  # fmt: skip
PNG = render_png("result", 1, 64, 64)
KEY = "sk-never-leaves-the-upstream"
MakeBackend = Callable[..., ImageBackend]


class Watch:
    async def cancel_requested(self) -> bool:
        return False


@pytest.fixture
def upstream() -> Iterator[RecordingServer]:
    with RecordingServer() as server:
        yield server


@pytest.fixture
def third_party() -> Iterator[RecordingServer]:
    """Another origin (loopback, another port): a blob host, or what an attacker names."""
    with RecordingServer() as server:
        server.answer("/image.png", PNG, Content_Type="image/png", Set_Cookie="tp=1; Path=/")
        yield server


@pytest.fixture
async def backend_for(upstream: RecordingServer) -> AsyncIterator[MakeBackend]:
    clients: list[httpx.AsyncClient] = []

    def make(kind: str = "generic", path: str = "/generate", **changes: object) -> ImageBackend:
        base = Settings(ai_generation_api_url=f"{upstream.url}{path}", ai_read_timeout_s=5)
        settings = replace(base, ai_generation_backend=kind, **changes)
        clients.append(create_client(settings))
        return create_backend(settings, clients[-1])

    yield make
    for client in clients:
        await client.aclose()


def answer_with_url(upstream: RecordingServer, url: str, kind: str = "generic") -> None:
    if kind == "openai":
        upstream.answer_json("/v1/images/generations", {"data": [{"url": url}]})
    else:
        upstream.answer_json("/generate", {"image_url": url}, Set_Cookie="up=1; Path=/")


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
@pytest.mark.parametrize(("kind", "path"), [("generic", "/generate"), ("openai", "")])
async def test_the_key_goes_to_the_upstream_and_never_to_a_result_host(
    upstream: RecordingServer,
    third_party: RecordingServer,
    backend_for: MakeBackend,
    kind: str,
    path: str,
    header: str,
) -> None:
    answer_with_url(upstream, f"{third_party.url}/image.png", kind)
    backend = backend_for(kind, path, ai_generation_api_key=KEY,
                          ai_generation_api_key_header=header,
                          ai_result_url_private_hosts="127.0.0.1")  # fmt: skip
    for _ in range(2):  # the second round would carry any cookie the first one set
        check_image(await backend.generate(REQUEST, Watch()))
    sent = f"Bearer {KEY}" if header == "Authorization" else KEY
    asked = upstream.requests
    assert [r.headers.get(header.lower()) for r in asked] == [sent, sent]
    fetched = third_party.received("/image.png")
    assert len(fetched) == 2
    for request in fetched:
        assert KEY not in str(request.headers)
        assert not {"authorization", "x-api-key", "cookie"} & request.headers.keys()
    assert all("cookie" not in r.headers for r in asked)


async def test_a_result_url_on_the_upstreams_own_origin_gets_the_key(
    upstream: RecordingServer, backend_for: MakeBackend
) -> None:
    answer_with_url(upstream, f"{upstream.url}/files/image.png")
    upstream.answer("/files/image.png", PNG, Content_Type="image/png")
    check_image(await backend_for(ai_generation_api_key=KEY).generate(REQUEST, Watch()))
    assert upstream.received("/files/image.png")[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "[::ffff:127.0.0.1]"])
async def test_a_result_url_on_loopback_is_refused(
    upstream: RecordingServer, third_party: RecordingServer, backend_for: MakeBackend, host: str
) -> None:
    answer_with_url(upstream, f"http://{host}:{third_party.port}/image.png")
    with pytest.raises(UpstreamTerminalError, match="not a public address") as refused:
        await backend_for().generate(REQUEST, Watch())
    assert "AI_RESULT_URL_PRIVATE_HOSTS" in str(refused.value)
    assert third_party.requests == []


@pytest.mark.parametrize(
    "allowed", ["127.0.0.1", "127.0.0.0/8", "localhost", "10.0.0.0/8,localhost"]
)
async def test_a_listed_host_or_network_may_be_private(
    upstream: RecordingServer, third_party: RecordingServer, backend_for: MakeBackend, allowed: str
) -> None:
    answer_with_url(upstream, f"http://localhost:{third_party.port}/image.png")
    # A listed address or network allows a name that resolves into it (localhost here).
    check_image(await backend_for(ai_result_url_private_hosts=allowed).generate(REQUEST, Watch()))
    assert len(third_party.received("/image.png")) == 1


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/x.png", "gopher://127.0.0.1:70/_x",
            "HTTP://[::1/x", "http://999.1.1.1/x.png", "http:///x.png"],
)  # fmt: skip
async def test_other_schemes_and_broken_urls_are_refused(
    upstream: RecordingServer, backend_for: MakeBackend, url: str
) -> None:
    answer_with_url(upstream, url)
    with pytest.raises(UpstreamTerminalError, match="refused"):
        await backend_for(ai_result_url_private_hosts="127.0.0.0/8").generate(REQUEST, Watch())


async def test_redirects_are_not_followed(
    upstream: RecordingServer, third_party: RecordingServer, backend_for: MakeBackend
) -> None:
    third_party.answer("/moved.png", status=302, Location=f"{upstream.url}/files/image.png")
    upstream.answer("/files/image.png", PNG, Content_Type="image/png")
    answer_with_url(upstream, f"{third_party.url}/moved.png")
    backend = backend_for(ai_generation_api_key=KEY, ai_result_url_private_hosts="127.0.0.1")
    with pytest.raises(UpstreamTerminalError, match=r"HTTP 302 \(redirects are not followed\)"):
        await backend.generate(REQUEST, Watch())
    assert upstream.received("/files/image.png") == []


class Connector(httpcore.AsyncNetworkBackend):
    """Stands in for the socket layer: records where the guard would connect, connects nowhere."""

    def __init__(self) -> None:
        self.targets: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.targets.append((host, port))
        raise httpcore.ConnectError("the test's connector connects nowhere")


NON_GLOBAL = [
    "10.11.12.13", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",  # noqa: S104
    "127.0.0.2", "224.0.0.1", "255.255.255.255", "::", "::1", "fe80::1", "fd12:3456::1",
    "ff0e::1", "::ffff:10.0.0.1", "2002:a00:1::1", "64:ff9b::a9fe:a9fe",
]  # fmt: skip


@pytest.mark.parametrize("address", NON_GLOBAL)
async def test_the_guard_refuses_non_global_addresses_before_connecting(address: str) -> None:
    connector = Connector()
    guard = GuardedNetworkBackend(AddressPolicy(upstream=("127.0.0.1", 8000)), connector)
    with pytest.raises(AddressRefusedError):
        await guard.connect_tcp(address, 80, timeout=1)
    assert connector.targets == []
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("10.11.12.13", "10.0.0.0/8"), ("169.254.169.254", "169.254.169.254"),
     ("fd12:3456::1", "fd00::/8")],
)  # fmt: skip
async def test_the_guard_lets_listed_networks_through(address: str, allowed: str) -> None:
    connector = Connector()
    settings = Settings(ai_result_url_private_hosts=allowed)
    guard = GuardedNetworkBackend(AddressPolicy.from_settings(settings), connector)
    with pytest.raises(httpcore.ConnectError, match="connects nowhere"):
        await guard.connect_tcp(address, 80, timeout=1)
    assert connector.targets == [(address, 80)]


async def test_the_guard_connects_to_the_address_it_checked() -> None:
    # Resolving once and connecting to that literal is what defeats DNS rebinding: the name
    # never reaches the socket layer, so there is no second answer to swap in.
    connector = Connector()
    policy = AddressPolicy(upstream=None, private_networks=[ipaddress.ip_network("127.0.0.0/8")])
    with pytest.raises(httpcore.ConnectError):
        await GuardedNetworkBackend(policy, connector).connect_tcp("localhost", 9, timeout=1)
    assert connector.targets
    assert {host for host, _ in connector.targets} <= {"127.0.0.1"}


async def test_the_upstream_itself_connects_as_configured() -> None:
    connector = Connector()
    policy = AddressPolicy.from_settings(Settings(ai_generation_api_url="http://10.1.2.3:8188"))
    with pytest.raises(httpcore.ConnectError):
        await GuardedNetworkBackend(policy, connector).connect_tcp("10.1.2.3", 8188, timeout=1)
    assert connector.targets == [("10.1.2.3", 8188)]
    with pytest.raises(AddressRefusedError):  # the same host on another port is not the upstream
        await GuardedNetworkBackend(policy, connector).connect_tcp("10.1.2.3", 8189, timeout=1)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "1.1.1.1"])
def test_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def test_the_setting_names_hosts_or_networks() -> None:
    settings = load_settings({"AI_RESULT_URL_PRIVATE_HOSTS": " files.internal , 10.8.0.0/16,"})
    assert settings.result_url_private_hosts == ("files.internal", "10.8.0.0/16")
    with pytest.raises(SettingsError, match="AI_RESULT_URL_PRIVATE_HOSTS"):
        load_settings({"AI_RESULT_URL_PRIVATE_HOSTS": "http://files.internal/"})


async def test_an_error_that_echoes_the_prompt_keeps_the_reason_without_it(
    upstream: RecordingServer, backend_for: MakeBackend
) -> None:
    prompt = "portrait of Aria Voss, silver hair, violet eyes, neon city at night"
    message = {"error": {"message": f"content policy: '{prompt}' was refused"}}
    upstream.answer("/generate", msgspec.json.encode(message), status=400,
                    Content_Type="application/json")  # fmt: skip
    request = msgspec.structs.replace(REQUEST, prompt=prompt)
    with pytest.raises(UpstreamTerminalError) as refused:
        await backend_for("generic").generate(request, Watch())
    text = str(refused.value)
    assert text.startswith("generic: HTTP 400: content policy: '<prompt>' was refused"), text
    assert "Aria" not in text
    assert "violet eyes" not in text
