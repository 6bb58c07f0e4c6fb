"""Which URLs a hook may have, and Hook's validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from applikant.webhooks import EVENTS, Hook, InvalidHookURL, new_secret, validate_url

GOOD = [
    "http://example.org/hook",
    "https://ci.example.org:8443/a/b?c=d",
    "http://127.0.0.1:9000/",
    "http://[::1]:8080/x",
    "https://xn--bcher-kva.example/",
]
BAD = {
    "ftp://example.org/x": "only http:// and https://",
    "file:///etc/passwd": "only http:// and https://",
    "javascript:alert(1)": "only http:// and https://",
    "gopher://example.org/": "only http:// and https://",
    "example.org/hook": "only http:// and https://",
    "//example.org/hook": "only http:// and https://",
    "http:///path": "no host",
    "https://": "no host",
    "http://user:pw@example.org/": "user name or password",
    "http://token@example.org/": "user name or password",
    "http://example.org/a b": "spaces or control",
    "http://example.org/\n": "spaces or control",
    "http://example.org:99999/": "malformed",
    "http://example.org:0/": "port 0",
    "": "empty",
    "http://example.org/" + "a" * 3000: "longer than",
}


@pytest.mark.parametrize("url", GOOD)
def test_good(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize("url,why", BAD.items())
def test_bad(url: str, why: str) -> None:
    with pytest.raises(InvalidHookURL, match=why):
        validate_url(url)


def test_hook_refuses_a_bad_url_when_made() -> None:
    hook = Hook(id="hook-1", url="https://example.org/h", secret=new_secret())
    assert hook.events == ["push"] and hook.active and hook.repo_id is None
    with pytest.raises(ValidationError, match="only http:// and https://"):
        Hook(id="hook-1", url="ftp://example.org/h", secret="s")
    with pytest.raises(ValidationError):
        Hook(id="hook-1", url="https://example.org/h", secret="s", events=["pull"])
    with pytest.raises(ValidationError):
        Hook(id="hook-1", url="https://example.org/h", secret="s", events=[])
    assert set(EVENTS) >= {"push", "repo_created", "repo_deleted", "build_finished"}
    assert len(new_secret()) == 64 and new_secret() != new_secret()
