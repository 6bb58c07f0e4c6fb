"""Small helpers every handler uses: who is asking, and who may see what."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from .am import AmError
from .auth import Viewer

__all__ = ["web_of", "viewer_of", "require_login", "require_admin", "readable_repo",
           "client_of"]


def web_of(request: Request) -> Any:
    return request.app.state.web


def client_of(request: Request) -> str:
    return request.client.host if request.client else ""


async def viewer_of(request: Request) -> Viewer:
    """The session's viewer (pages); cached on the request."""
    cached = getattr(request.state, "viewer", None)
    if cached is None:
        cached = await web_of(request).auth.session_viewer(request.session)
        request.state.viewer = cached
    return cached


class LoginRequired(HTTPException):
    def __init__(self) -> None:
        super().__init__(401, "please log in to see this page")


async def require_login(request: Request) -> Viewer:
    viewer = await viewer_of(request)
    if viewer.user is None:
        raise LoginRequired()
    return viewer


async def require_admin(request: Request) -> Viewer:
    viewer = await require_login(request)
    if not viewer.is_admin:
        raise HTTPException(403, "only site administrators may do this")
    return viewer


async def readable_repo(web: Any, viewer: Viewer, owner: str, name: str,
                        access: str = "read") -> tuple[dict, dict]:
    """(repo, decision) when `viewer` has `access`; AmError(404/403) otherwise.

    Existence of a private repository is not revealed to those who cannot read it.
    """
    path = f"{owner}/{name}"
    decision = await web.am.check_access(viewer.id, path, access)
    if not decision["allowed"]:
        if access != "read" and decision.get("level"):
            raise AmError(403, decision["reason"], "forbidden")
        raise AmError(404, decision["reason"], "not_found")
    return await web.am.get_repo(viewer.id, path), decision
