"""Secrets and defences that need no am: the session key, CSRF tokens, login throttling.

- `load_secret(path)`: the session signing key, made (random, mode 0600) on
  first start, so sessions survive a restart of aw.
- CSRF: one random token per session, put into every form as a hidden field
  and compared in constant time on every POST (`check_csrf`).
- `Throttle`: failed logins counted per login name and per client address;
  after `free` failures (5 per login, 30 per address) each further attempt
  must wait twice as long as the last (capped), and the wait is shown to the user. A success clears the
  login's count, not the address's.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import time
from dataclasses import dataclass

from ..fsutil import write_atomic
from ..schema.users import TOKEN_TITLE_MAX as TOKEN_TITLE_MAX  # the longest am accepts

__all__ = [
    "Throttle",
    "csrf_ok",
    "load_secret",
    "looks_like_token",
    "new_csrf",
    "parse_basic",
    "parse_bearer",
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
    count: int
    last: float


class Throttle:
    """Slows down repeated failed logins; see the module docstring."""

    def __init__(
        self,
        free: int = 5,
        base: float = 1.0,
        cap: float = 300.0,
        forget: float = 3600.0,
        clock=time.monotonic,
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

    def _delay(self, key: str, f: _Failures) -> float:
        free = self._free(key)
        if f.count < free:
            return 0.0
        return min(self.base * 2 ** (f.count - free), self.cap)

    def wait(self, *keys: str) -> float:
        """Seconds before another attempt for these keys is allowed (0: go ahead)."""
        now = self.clock()
        longest = 0.0
        for key in keys:
            f = self._seen.get(key)
            if f is None:
                continue
            if now - f.last > self.forget:
                del self._seen[key]
                continue
            longest = max(longest, f.last + self._delay(key, f) - now)
        return max(longest, 0.0)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        if len(self._seen) > 100_000:
            self._seen = {k: f for k, f in self._seen.items() if now - f.last <= self.forget}
        for key in keys:
            f = self._seen.setdefault(key, _Failures(0, now))
            f.count += 1
            f.last = now

    def succeeded(self, key: str) -> None:
        self._seen.pop(key, None)
