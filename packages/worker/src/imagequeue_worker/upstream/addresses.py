"""Where the worker's HTTP client may connect: the SSRF guard.

An upstream answer can point us at any URL (OpenAI's ``url``, a generic ``image_url``). The
configured upstream's own host and port are the operator's choice and always reachable;
every other connection first resolves its host name, checks *every* address it resolves to,
and then connects to one of those checked addresses itself. httpcore would otherwise
resolve the name a second time when it connects, and a DNS answer that changed in between
(DNS rebinding) could reach an address that was never checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from imagequeue_common.errors import AddressRefusedError
from imagequeue_common.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded_ipv4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), else ``address``."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_public(address: IPAddress) -> bool:
    """True for a globally routable unicast address: not loopback, private (RFC 1918, ULA),
    link-local (the 169.254.169.254 metadata service), shared, unspecified, multicast or
    reserved. ``is_global`` alone lets multicast (224.0.0.1, ff0e::1) and 6to4 through."""
    address = embedded_ipv4(address)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
        or address.is_loopback or address.is_link_local or address.is_private
    )  # fmt: skip


class AddressPolicy:
    """Which (host, address) pairs a connection may go to."""

    def __init__(
        self,
        upstream: tuple[str, int] | None,
        private_names: Iterable[str] = (),
        private_networks: Iterable[IPNetwork] = (),
    ) -> None:
        self.upstream = upstream
        self.private_names = frozenset(name.lower().rstrip(".") for name in private_names)
        self.private_networks = tuple(private_networks)

    @classmethod
    def from_settings(cls, settings: Settings) -> AddressPolicy:
        """The upstream of ``AI_GENERATION_API_URL``; ``AI_RESULT_URL_PRIVATE_HOSTS``."""
        url = settings.ai_generation_api_url
        upstream = host_and_port(httpx.URL(url)) if url else None
        names: list[str] = []
        networks: list[IPNetwork] = []
        for entry in settings.result_url_private_hosts:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.append(entry)
        return cls(upstream, names, networks)

    def trusts(self, host: str, port: int) -> bool:
        """True for the upstream's own host and port, and for a listed host name: these
        connect as configured, whatever their names resolve to."""
        host = host.lower().rstrip(".")
        return (host, port) == self.upstream or host in self.private_names

    def allows(self, address: IPAddress) -> bool:
        """True when an untrusted host may be reached at ``address``."""
        plain = embedded_ipv4(address)
        return is_public(plain) or any(plain in net for net in self.private_networks)


def host_and_port(url: httpx.URL) -> tuple[str, int]:
    """The host (lower case, IPv6 without brackets) and port (default filled in) of ``url``."""
    return url.raw_host.decode("ascii").lower(), url.port or DEFAULT_PORTS.get(url.scheme, 0)


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network side with :class:`AddressPolicy` between the name and the socket."""

    def __init__(
        self, policy: AddressPolicy, inner: httpcore.AsyncNetworkBackend | None = None
    ) -> None:
        self.policy = policy
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Connect to ``host`` as configured when trusted; else to a checked address of it."""
        if self.policy.trusts(host, port):
            return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        resolved = await self._resolve(host, port, timeout)
        for address, _ in resolved:  # any refused address refuses the name: no mixed answers
            if not self.policy.allows(address):
                raise AddressRefusedError(host, str(address))
        failure: httpcore.ConnectError | None = None
        for _, literal in resolved:
            try:
                return await self.inner.connect_tcp(
                    literal, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"no address for {host}")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """Never used: the worker's client talks TCP only."""
        raise httpcore.ConnectError(f"unix sockets are not allowed ({path})")

    async def sleep(self, seconds: float) -> None:
        """httpcore's retry delay."""
        await self.inner.sleep(seconds)

    async def _resolve(
        self, host: str, port: int, limit_s: float | None
    ) -> list[tuple[IPAddress, str]]:
        """Each address ``host`` resolves to, with the literal to connect to (a link-local
        IPv6 one keeps its ``%zone``)."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(limit_s):
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took over {limit_s}s") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from None
        found: dict[IPAddress, str] = {}
        for *_, sockaddr in infos:
            literal = str(sockaddr[0])
            found.setdefault(ipaddress.ip_address(literal.split("%", 1)[0]), literal)
        return list(found.items())
