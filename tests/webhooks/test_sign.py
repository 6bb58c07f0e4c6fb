"""Signatures, checked against an independent computation."""

from __future__ import annotations

import hashlib
import hmac

from applikant.webhooks import signature, verify

BODY = b'{"zen":"Keep it logically awesome."}'


def test_signature_is_githubs_format() -> None:
    expected = hmac.new(b"It's a Secret to Everybody", BODY, hashlib.sha256).hexdigest()
    assert signature("It's a Secret to Everybody", BODY) == "sha256=" + expected
    assert signature(b"It's a Secret to Everybody", BODY) == "sha256=" + expected


def test_verify() -> None:
    good = signature("k", BODY)
    assert verify("k", BODY, good)
    assert not verify("k", BODY + b" ", good)
    assert not verify("other", BODY, good)
    assert not verify("k", BODY, None)
    assert not verify("k", BODY, "")
    assert not verify("k", BODY, good.removeprefix("sha256="))
    assert not verify("k", BODY, good.upper())
    assert not verify("k", BODY, "sha256=é")
