"""The signature of a delivery, as GitHub makes it: the header
`X-Applikant-Signature-256: sha256=<hex HMAC-SHA256 of the body with the
hook's secret>`. Receivers check it with `verify` (or its three lines)."""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["signature", "verify"]


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def signature(secret: str | bytes, body: bytes) -> str:
    """The header's value for `body`: "sha256=" and 64 hex digits."""
    return "sha256=" + hmac.new(_key(secret), body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` (compared in constant time)."""
    if not header:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header.encode())
