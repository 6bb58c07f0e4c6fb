"""Units of aw that need no network: throttle, header parsing, CSRF, secret file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from applikant.web.security import (
    Throttle,
    csrf_ok,
    load_secret,
    looks_like_token,
    parse_basic,
    parse_bearer,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_doubles_after_free_attempts_and_forgets() -> None:
    clock = Clock()
    t = Throttle(free=3, base=1.0, cap=8.0, forget=100.0, clock=clock)
    for _ in range(3):
        assert t.wait("login:a") == 0
        t.failed("login:a", "addr:x")
    assert t.wait("login:a") == 1.0
    t.failed("login:a")
    assert t.wait("login:a") == 2.0
    for _ in range(10):
        t.failed("login:a")
    assert t.wait("login:a") == 8.0  # capped
    assert t.wait("login:b") == 0 and t.wait("addr:x") == 0  # addresses get more slack
    clock.now += 9
    assert t.wait("login:a") == 0
    t.succeeded("login:a")
    assert t.wait("login:a") == 0
    clock.now += 1000
    assert t.wait("addr:x") == 0


def test_parse_authorization_headers() -> None:
    def basic(s: bytes) -> str:
        return "Basic " + base64.b64encode(s).decode()

    assert parse_basic(basic(b"alice:pa:ss")) == ("alice", "pa:ss")
    assert parse_basic(basic(b"no-colon")) is None
    assert parse_basic("Basic !!!") is None
    assert parse_basic(basic(b"\xff:x")) is None
    assert parse_basic("Bearer x") is None
    assert parse_bearer("Bearer  tok ") == "tok"
    assert parse_bearer("Basic x") is None
    assert looks_like_token("user-42." + "x" * 40)
    assert not looks_like_token("user-x." + "x" * 40)
    assert not looks_like_token("hunter2")


def test_csrf_comparison() -> None:
    assert csrf_ok("abc", "abc")
    assert not csrf_ok("abc", "abd")
    assert not csrf_ok(None, None) and not csrf_ok("", "")
    assert not csrf_ok("abc", ["abc"])


def test_session_secret_is_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "session.key"
    first = load_secret(str(path))
    assert len(first) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret(str(path)) == first
