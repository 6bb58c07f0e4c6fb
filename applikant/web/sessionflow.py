"""The steps of a session's life that several pages share: a fresh cookie
after a login, a new session after the user's own password changed, and the
proof of the password that some changes ask for."""

from __future__ import annotations

from starlette.requests import Request

from .auth import AuthError, Viewer
from .common import client_of, web_of
from .render import flash
from .security import new_csrf

__all__ = ["begin", "confirmed", "renew_session"]


def begin(request: Request, secret: str) -> None:
    """The cookie of a fresh session: nothing from before survives (no fixation)."""
    request.session.clear()
    request.session["sid"] = secret
    request.session["csrf"] = new_csrf()


async def confirmed(request: Request, viewer: Viewer, password: str) -> bool:
    """Whether the viewer proved their password (recently, or `password` now);
    False with the reason flashed."""
    try:
        await web_of(request).auth.confirm_recent(viewer, password or None, client_of(request))
    except AuthError as exc:
        if exc.status == 401:
            raise
        flash(request, exc.message.replace(" (current_password)", ""), "error")
        return False
    return True


async def renew_session(request: Request, viewer: Viewer) -> None:
    """After the viewer's own password changed (which ended all their sessions
    in am): a new session for this browser."""
    if viewer.via == "session" and viewer.id is not None:
        web = web_of(request)
        ua = request.headers.get("user-agent", "")
        begin(request, await web.auth.start_session(viewer.id, client_of(request), ua))
