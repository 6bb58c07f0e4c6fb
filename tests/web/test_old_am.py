"""aw in front of an am from before its one-call questions (resolve_repo,
as_token): it asks the way it did before, and answers the same."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from applikant.amclient import AmRefused
from applikant.web.am import Am, AmError, StaleToken, TokenProof, with_token
from applikant.web.auth import Viewer
from applikant.web.common import viewer_and_repo
from applikant.web.security import TrustedProxies

USER = {"id": "user-7", "login": "ann", "is_admin": False}
REPO = {"id": "repo-1", "full_name": "ann/app"}
SESSION = {"id": "session-1"}


class OldAmClient:
    """am's client side, answering as an am without the new methods."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def call(self, service: str, method: str, args: Any, timeout: float | None) -> Any:
        self.asked.append(method)
        if method in ("resolve_repo", "as_token"):
            raise AmRefused("no_such_method", f"{service} has no method {method!r}")
        if method == "resolve":
            return {"session": SESSION, "user": USER}
        if method == "check_access":
            return {"allowed": True, "reason": "owner", "level": "admin", "repo": "ann/app"}
        if method == "get_repo":
            return REPO
        if method == "list_repos":
            return {"items": [REPO], "next": None, "total": 1}
        raise AssertionError(method)


def _am() -> tuple[Am, OldAmClient]:
    am = Am(None, "am@localhost", timeout=1.0)  # type: ignore[arg-type]
    client = OldAmClient()
    am.client = client  # type: ignore[assignment]
    return am, client


async def test_a_token_read_falls_back_to_the_check_then_the_read() -> None:
    am, client = _am()
    with with_token(TokenProof("user-7.secret", USER)):
        with pytest.raises(StaleToken):  # apitable then checks the token first
            await am.list_repos("user-7", limit=5)
    assert await am.list_repos("user-7", limit=5) == {"items": [REPO], "next": None, "total": 1}
    assert client.asked == ["as_token", "list_repos"]


async def test_a_repository_page_falls_back_to_three_questions() -> None:
    am, client = _am()

    class Web:
        proxies = TrustedProxies()

    web = Web()
    web.am = am  # type: ignore[attr-defined]
    from applikant.web.auth import Auth
    from applikant.web.security import Throttle

    web.auth = Auth(am, Throttle())  # type: ignore[attr-defined]

    class App:
        class state:
            pass

    App.state.web = web  # type: ignore[attr-defined]
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/ann/app",
        "headers": [],
        "client": ("127.0.0.1", 5000),
        "app": App,
        "session": {"sid": "cookie-secret"},
        "state": {},
    }
    viewer, repo, decision = await viewer_and_repo(Request(scope), "ann", "app")
    assert viewer == Viewer(USER, "session", SESSION)
    assert repo == REPO and decision["allowed"] and decision["level"] == "admin"
    assert client.asked[:2] == ["resolve_repo", "resolve"]
    assert sorted(client.asked[2:]) == ["check_access", "get_repo"]


async def test_other_refusals_are_not_taken_for_an_old_am() -> None:
    am, _ = _am()

    class Refusing(OldAmClient):
        async def call(self, service: str, method: str, args: Any, timeout: float | None) -> Any:
            raise AmRefused("forbidden", "no")

    am.client = Refusing()  # type: ignore[assignment]
    with with_token(TokenProof("user-7.secret", USER)):
        with pytest.raises(AmError) as refused:
            await am.list_repos("user-7", limit=5)
    assert refused.value.status == 403
