"""How a delivery connects: resolve, check, and connect to the checked address.

`GuardedBackend` is the httpcore network backend of the delivery client. For
every connection (a delivery never reuses one) it resolves the host itself,
drops the addresses the `HostPolicy` refuses, and connects to one of the
addresses it checked, by number. So the address checked is the address
connected to: a name that resolves to a public address for a check and to
127.0.0.1 for the connection (DNS rebinding) has no second resolution to
exploit. TLS and the Host header still use the URL's host name (httpcore
does both above this layer: SNI and certificate checks against the name).

Failures are httpcore's own exceptions, so httpx reports them as usual:
`AddressRefused` (a `ConnectError`) when the policy leaves no address, with
the reason; `ConnectError` or `ConnectTimeout` otherwise.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpcore
import trio

from .urls import HostPolicy, IPAddress

__all__ = ["AddressRefused", "GuardedBackend", "Resolver"]

#: host, port -> the addresses it resolves to (trio's getaddrinfo by default).
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class AddressRefused(httpcore.ConnectError):
    """Every address of the host is one webhooks may not reach."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host} resolves to a {reason} address, which webhooks may not reach")
        self.host = host
        self.reason = reason


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of `host` (an address itself, or a name for DNS), in the
    resolver's order, without repeats."""
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    infos = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if ip not in found:
            found.append(ip)
    return found


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Connections only to addresses `policy` allows; see the module docstring."""

    def __init__(self, policy: HostPolicy, resolver: Resolver = resolve) -> None:
        self.policy = policy
        self.resolver = resolver
        self._trio = httpcore.TrioBackend()

    def checked(self, host: str, addresses: Iterable[IPAddress]) -> list[IPAddress]:
        """The addresses of `host` it may connect to; AddressRefused if none."""
        allowed: list[IPAddress] = []
        refused = ""
        for ip in addresses:
            reason = self.policy.refusal(host, ip)
            if reason is None:
                allowed.append(ip)
            else:
                refused = refused or reason
        if not allowed:
            raise AddressRefused(host, refused or "unknown")
        return allowed

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with trio.fail_after(float("inf") if timeout is None else timeout):
                try:
                    addresses = await self.resolver(host, port)
                except OSError as exc:
                    raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
                allowed = self.checked(host, addresses)
                last: Exception | None = None
                for ip in allowed:
                    try:
                        # By number: trio does not resolve it again.
                        return await self._trio.connect_tcp(
                            str(ip),
                            port,
                            local_address=local_address,
                            socket_options=socket_options,
                        )
                    except httpcore.ConnectError as exc:
                        last = exc
                assert last is not None
                raise last
        except trio.TooSlowError as exc:
            raise httpcore.ConnectTimeout(f"connecting to {host} took too long") from exc

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks do not post to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await trio.sleep(seconds)
