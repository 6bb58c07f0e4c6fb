"""Units of aw that need no network: throttle, header parsing, CSRF, secret file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from applikant.web.security import (
    Throttle,
    Throttled,
    TrustedProxies,
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
        t.reserve("login:a", "addr:x").failed()
    assert t.wait("login:a") == 1.0
    clock.now += 1
    t.reserve("login:a").failed()
    assert t.wait("login:a") == 2.0
    for _ in range(10):
        clock.now += 10
        t.reserve("login:a").failed()
    assert t.wait("login:a") == 8.0  # capped
    assert t.wait("login:b") == 0 and t.wait("addr:x") == 0  # addresses get more slack
    clock.now += 9
    assert t.wait("login:a") == 0
    t.reserve("login:a").succeeded("login:a")
    assert t.wait("login:a") == 0
    clock.now += 1000
    assert t.wait("addr:x") == 0


def test_concurrent_guesses_count_before_they_are_answered() -> None:
    """Attempts reserved and not yet answered count: a burst gets the free
    attempts and no more, however many arrive together."""
    clock = Clock()
    t = Throttle(free=5, base=30.0, clock=clock)
    let_through = []
    for _ in range(300):
        try:
            let_through.append(t.reserve("login:a", "addr:x"))
        except Throttled as exc:
            assert exc.wait >= 1
    assert len(let_through) == 5
    for attempt in let_through:
        attempt.failed()
        attempt.failed()  # settled once: the second call changes nothing
    with pytest.raises(Throttled) as caught:
        t.reserve("login:a", "addr:x")
    assert caught.value.wait == 30.0
    # Past the limit, one attempt at a time, after the wait.
    clock.now += 30
    one = t.reserve("login:a")
    with pytest.raises(Throttled):
        t.reserve("login:a")
    one.cancel()  # am could not answer: it does not count
    t.reserve("login:a").succeeded("login:a")
    assert t.wait("login:a") == 0 and t.wait("addr:x") == 0


def test_trusted_proxies_give_the_forwarded_client() -> None:
    none = TrustedProxies()
    assert not none and none.client("10.0.0.1", "198.51.100.7") == "10.0.0.1"
    proxies = TrustedProxies(["127.0.0.1", "10.0.0.0/8"])
    assert proxies.trusts("10.2.3.4") and not proxies.trusts("192.0.2.1")
    # The right-most address that is not a trusted proxy; spoofed ones to its left do not count.
    assert proxies.client("127.0.0.1", "203.0.113.9, 198.51.100.7, 10.0.0.5") == "198.51.100.7"
    assert proxies.client("127.0.0.1", None) == "127.0.0.1"
    assert proxies.client("127.0.0.1", "garbage") == "127.0.0.1"
    assert proxies.client("192.0.2.1", "198.51.100.7") == "192.0.2.1"  # not a proxy of ours
    assert proxies.client("127.0.0.1", "10.0.0.5, 127.0.0.1") == "127.0.0.1"


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
