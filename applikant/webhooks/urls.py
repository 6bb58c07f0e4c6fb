"""Which URLs a hook may have: absolute http or https URLs with a host.

Checked when a hook is made or changed (the API answers 4xx with the message)
and again before each attempt. Anything else, file:, ftp:, javascript:, a URL
without a host, with credentials in it, with spaces or control characters, is
refused.

Where a hook may post is a second question, answered for every connection
(after DNS, for the very address connected to: dial.py) by `HostPolicy`:
only public addresses by default. Loopback, private (RFC 1918, ULA),
link-local, multicast, unspecified, reserved and carrier-grade NAT addresses,
and the cloud metadata endpoints, are refused, including when they hide in an
IPv6 form (IPv4-mapped, 6to4, Teredo, NAT64), so that a user who may add a
hook cannot make am post to (and show the answers of) the services inside.
A site admin allows more in `[webhooks] allowed_hosts`, as Gitea's
`ALLOWED_HOST_LIST`: host names (`ci.internal`, `*.corp.example`), CIDRs
(`10.1.0.0/16`), the words `loopback` and `private`, or `*` (anything).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "MAX_URL",
    "HostPolicy",
    "IPAddress",
    "InvalidHookURL",
    "blocked_reason",
    "validate_url",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL = 2048


class InvalidHookURL(ValueError):
    """The URL cannot be a webhook's; the message says why, for the user."""


def validate_url(url: str) -> str:
    """`url` itself when a hook may post to it; InvalidHookURL otherwise."""
    if not isinstance(url, str) or not url:
        raise InvalidHookURL("the URL is empty")
    if len(url) > MAX_URL:
        raise InvalidHookURL(f"the URL is longer than {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise InvalidHookURL("the URL contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidHookURL(f"the URL is malformed ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidHookURL("only http:// and https:// URLs can receive webhooks")
    if not parts.hostname:
        raise InvalidHookURL("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidHookURL(
            "the URL must not contain a user name or password (the secret signs the deliveries)"
        )
    if port == 0:
        raise InvalidHookURL("the URL has port 0")
    return url


# ---- where a hook may post ------------------------------------------------------

#: Cloud instance metadata services, named for the refusal's reason.
METADATA = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean...
        "169.254.170.2",  # AWS ECS task metadata
        "100.100.100.200",  # Alibaba Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_WORDS = ("loopback", "private")


def _embedded(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64):
    connecting to it may reach them."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _category(ip: IPAddress) -> str | None:
    if ip in METADATA:
        return "cloud metadata"
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return "carrier-grade NAT"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why webhooks may not reach `ip` by default (`loopback`, `private`,
    `cloud metadata`...), or None for a public address."""
    for candidate in [*_embedded(ip), ip]:
        reason = _category(candidate)
        if reason is not None:
            return reason
    return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class HostPolicy:
    """Which addresses deliveries may connect to: public ones, and whatever an
    admin allowed (see the module docstring). `HostPolicy()` allows public
    addresses only; `HostPolicy.parse(config entries)` makes the others."""

    names: tuple[str, ...] = ()  # host names, or patterns `*.example.org`
    networks: tuple[Network, ...] = ()
    words: frozenset[str] = frozenset()  # `*`, `loopback`, `private`

    @classmethod
    def parse(cls, entries: Iterable[str]) -> HostPolicy:
        """The policy of `[webhooks] allowed_hosts`; ValueError naming an entry
        that is none of the accepted forms."""
        names: list[str] = []
        networks: list[Network] = []
        words: set[str] = set()
        for raw in entries:
            entry = raw.strip().lower() if isinstance(raw, str) else ""
            if entry == "*" or entry in _WORDS:
                words.add(entry)
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            except ValueError:
                pass
            bare = entry[2:] if entry.startswith("*.") else entry
            if not bare or any(not (c.isalnum() or c in "-.") for c in bare):
                raise ValueError(
                    f"allowed_hosts: {raw!r} is not a host name, a CIDR, "
                    "`loopback`, `private` or `*`"
                )
            names.append(entry)
        return cls(tuple(names), tuple(networks), frozenset(words))

    def refusal(self, host: str, ip: IPAddress) -> str | None:
        """None when a delivery to `host` may connect to `ip`; else why not
        (the kind of address: `loopback`, `private`, `cloud metadata`...)."""
        if "*" in self.words:
            return None
        reason = blocked_reason(ip)
        if reason is None or reason in self.words:
            return None
        name = host.strip("[]").rstrip(".").lower()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in self.names):
            return None
        if any(ip.version == net.version and ip in net for net in self.networks):
            return None
        return reason
