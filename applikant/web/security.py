"""Secrets and defences that need no am: the cookie key, CSRF tokens, login
throttling, the client's address behind a proxy.

- `load_secret(path)`: the key that signs the cookie, made (random, mode 0600)
  on first start. The cookie holds a session's secret (am keeps the session)
  and its CSRF token.
- CSRF: one random token per session, put into every form as a hidden field
  and compared in constant time on every POST (`check_csrf`).
- `Throttle`: login attempts counted per login name and per client address,
  *before* am is asked (`reserve`), so guesses made at the same moment count
  against the same limits as guesses made one after another. After `free`
  failures (5 per login, 30 per address) only one attempt at a time is let
  through, the first after `base` (30 s), each next after twice the last wait
  (up to 5 minutes); the wait is shown to the user. A success clears the login's count, not the address's; an attempt
  am could not answer does not count.
- `TrustedProxies`: `X-Forwarded-For` believed from the configured reverse
  proxies only, so that the throttle counts per real client behind a proxy.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..fsutil import write_atomic
from ..schema.users import TOKEN_TITLE_MAX as TOKEN_TITLE_MAX  # the longest am accepts

__all__ = [
    "FORWARDING_HEADERS",
    "Reservation",
    "Throttle",
    "Throttled",
    "TrustedProxies",
    "csrf_ok",
    "is_loopback",
    "load_secret",
    "looks_like_token",
    "new_csrf",
    "parse_basic",
    "parse_bearer",
    "secret_ok",
]


def load_secret(path: str) -> str:
    """The session key stored at `path`; created (32 random bytes, 0600) when missing."""
    try:
        with open(path, encoding="ascii") as f:
            value = f.read().strip()
        if len(value) >= 32:
            return value
    except FileNotFoundError:
        pass
    value = secrets.token_hex(32)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomic(path, value + "\n", mode=0o600)
    return value


def new_csrf() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: object, given: object) -> bool:
    """Whether a submitted CSRF token matches the session's (constant time)."""
    if not isinstance(expected, str) or not isinstance(given, str) or not expected:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def parse_basic(header: str) -> tuple[str, str] | None:
    """(login, secret) from an `Authorization: Basic ...` header, or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value or len(value) > 4096:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    login, sep, secret = decoded.partition(":")
    return (login, secret) if sep else None


def parse_bearer(header: str) -> str | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() not in ("bearer", "token") or not value.strip() or len(value) > 512:
        return None
    return value.strip()


def looks_like_token(secret: str) -> bool:
    """API tokens are `user-N.<random>`; passwords can be anything else."""
    head, dot, tail = secret.partition(".")
    return bool(dot) and head.startswith("user-") and head[5:].isdigit() and len(tail) >= 20


@dataclass
class _Failures:
    count: int  # failed attempts
    last: float  # when the last one failed (or the first was reserved)
    pending: int = 0  # attempts reserved and not yet answered


class Throttled(Exception):
    """No attempt now: try again in `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"try again in {int(wait) + 1} s")
        self.wait = wait


#: How long a caller is asked to wait for guesses still being checked.
PENDING_WAIT = 1.0


class Throttle:
    """Counts login attempts, the ones being checked included; see the module
    docstring. `reserve(keys)` before asking am, then exactly one of
    `failed`, `succeeded` or `cancel` on what it returned."""

    def __init__(
        self,
        free: int = 5,
        base: float = 30.0,
        cap: float = 300.0,
        forget: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
        free_by_prefix: dict[str, int] | None = None,
    ) -> None:
        self.free = free
        # An address (a NAT, an office) is shared by many people: it gets more slack.
        self.free_by_prefix = free_by_prefix if free_by_prefix is not None else {"addr:": 30}
        self.base = base
        self.cap = cap
        self.forget = forget
        self.clock = clock
        self._seen: dict[str, _Failures] = {}

    def _free(self, key: str) -> int:
        for prefix, free in self.free_by_prefix.items():
            if key.startswith(prefix):
                return free
        return self.free

    def _wait(self, key: str, now: float) -> float:
        f = self._seen.get(key)
        if f is None:
            return 0.0
        if not f.pending and now - f.last > self.forget:
            del self._seen[key]
            return 0.0
        free = self._free(key)
        if f.count + f.pending < free:
            return 0.0
        if f.count < free:
            return PENDING_WAIT  # the free attempts left are all being checked
        # Past the limit: one guess at a time, each after a longer wait.
        wait = f.last + min(self.base * 2 ** (f.count - free), self.cap) - now
        return max(wait, PENDING_WAIT if f.pending else 0.0)

    def wait(self, *keys: str) -> float:
        """Seconds before an attempt for these keys would be let through (0: now)."""
        now = self.clock()
        return max([self._wait(key, now) for key in keys] + [0.0])

    def reserve(self, *keys: str) -> Reservation:
        """Count an attempt for `keys` now, before it is checked; Throttled when
        it must wait. Concurrent attempts count against the same limits."""
        now = self.clock()
        wait = self.wait(*keys)
        if wait > 0:
            raise Throttled(wait)
        if len(self._seen) > 100_000:
            self._seen = {
                k: f for k, f in self._seen.items() if f.pending or now - f.last <= self.forget
            }
        for key in keys:
            self._seen.setdefault(key, _Failures(0, now)).pending += 1
        return Reservation(self, keys)

    def _settle(self, keys: tuple[str, ...], failed: bool, clear: str | None = None) -> None:
        now = self.clock()
        for key in keys:
            f = self._seen.get(key)
            if f is None:
                continue
            f.pending = max(0, f.pending - 1)
            if failed:
                f.count += 1
                f.last = now
            if key == clear:
                f.count = 0
            if not f.pending and not f.count:
                del self._seen[key]


class Reservation:
    """One attempt counted by a Throttle, settled once."""

    def __init__(self, throttle: Throttle, keys: tuple[str, ...]) -> None:
        self._throttle = throttle
        self._keys = keys
        self._open = True

    def _settle(self, failed: bool, clear: str | None = None) -> None:
        if self._open:
            self._open = False
            self._throttle._settle(self._keys, failed, clear)

    def failed(self) -> None:
        """The guess was wrong: it counts."""
        self._settle(True)

    def succeeded(self, clear: str) -> None:
        """The guess was right: `clear` (the login's key) starts again from zero."""
        self._settle(False, clear)

    def cancel(self) -> None:
        """Nothing was checked (am could not answer): the attempt does not count."""
        self._settle(False)


# ---- the client's address behind reverse proxies -----------------------------------


class TrustedProxies:
    """The reverse proxies (`[aw] trusted_proxies`: addresses or CIDRs) whose
    `X-Forwarded-For` aw believes. A request from one of them comes from the
    right-most address in that header that is not itself a trusted proxy; from
    anyone else, the header is ignored (anybody can send it)."""

    def __init__(self, entries: Iterable[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(e.strip(), strict=False) for e in entries]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        ip = _ip(address)
        return ip is not None and any(
            ip.version == net.version and ip in net for net in self.networks
        )

    def client(self, peer: str, forwarded_for: str | None) -> str:
        """The client's address for a request from `peer` with that header."""
        if not forwarded_for or not self.trusts(peer):
            return peer
        for hop in reversed(forwarded_for.split(",")[-32:]):
            ip = _ip(hop.strip())
            if ip is None:
                return peer  # a header we cannot read: only the proxy is known
            if not self.trusts(str(ip)):
                return str(ip)
        return peer


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


#: Headers that show a proxy forwarded the request, trusted or not.
FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")


def is_loopback(address: str) -> bool:
    ip = _ip(address)
    return ip is not None and ip.is_loopback


def secret_ok(expected: str, given: str | None) -> bool:
    """Whether `given` is the configured secret `expected` (constant time; an
    empty `expected` matches nothing)."""
    if not expected or not isinstance(given, str):
        return False
    return hmac.compare_digest(expected.encode(), given.encode())
