"""Small helpers every handler uses: who is asking, and who may see what."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from .am import AmError
from .auth import Viewer
from .lru import Lru
from .together import gather

__all__ = [
    "AUDIT_FILTERS",
    "client_of",
    "query_audit",
    "readable_repo",
    "readable_repo_for",
    "require_admin",
    "require_login",
    "session_hint",
    "viewer_of",
    "web_of",
]


def web_of(request: Request) -> Any:
    return request.app.state.web


def client_of(request: Request) -> str:
    """The client's address: the peer's, or behind a trusted reverse proxy the
    one it forwarded for (`[aw] trusted_proxies`)."""
    peer = request.client.host if request.client else ""
    proxies = web_of(request).proxies
    return proxies.client(peer, request.headers.get("x-forwarded-for")) if proxies else peer


async def viewer_of(request: Request) -> Viewer:
    """The session's viewer (pages); cached on the request."""
    cached = getattr(request.state, "viewer", None)
    if cached is None:
        sid = _sid(request)
        cached = await web_of(request).auth.session_viewer(request.session, client_of(request))
        request.state.viewer = cached
        if sid and cached.id is not None:
            _seen.put(_digest(sid), cached.id)
    return cached


# The user each session stood for when this aw last resolved it, by a digest of
# its secret: a guess that lets a page ask am about access while the session is
# being resolved (repoview.open_repo), never a proof of who is asking.
_seen: Lru[bytes, str] = Lru(100_000)  # entries


def _sid(request: Request) -> str | None:
    sid = request.session.get("sid") if "session" in request.scope else None
    return sid if isinstance(sid, str) else None


def _digest(sid: str) -> bytes:
    return hashlib.sha256(sid.encode()).digest()


def session_hint(request: Request) -> str | None:
    """The user id this request's session was last resolved to (None: unknown,
    anonymous, or already resolved on this request)."""
    sid = _sid(request)
    if sid is None or getattr(request.state, "viewer", None) is not None:
        return None
    return _seen.get(_digest(sid))


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


async def readable_repo(
    web: Any, viewer: Viewer, owner: str, name: str, access: str = "read"
) -> tuple[dict, dict]:
    """(repo, decision) when `viewer` has `access`; AmError(404/403) otherwise.

    Existence of a private repository is not revealed to those who cannot read it.
    """
    return await readable_repo_for(web, viewer.id, owner, name, access)


async def readable_repo_for(
    web: Any, user: str | None, owner: str, name: str, access: str = "read"
) -> tuple[dict, dict]:
    """`readable_repo` for the user id `user` (None: anonymous)."""
    path = f"{owner}/{name}"

    async def repo_or_error() -> Any:
        try:
            return await web.am.get_repo(user, path)
        except AmError as exc:
            return exc

    # Both questions at once (one round trip to am, not two); the decision is
    # read first, so a refusal is answered as before, whatever get_repo said.
    decision, repo = await gather(lambda: web.am.check_access(user, path, access), repo_or_error)
    if not decision["allowed"]:
        if access != "read" and decision.get("level"):
            raise AmError(403, decision["reason"], "forbidden")
        raise AmError(404, decision["reason"], "not_found")
    if isinstance(repo, AmError):
        raise repo
    return repo, decision


AUDIT_FILTERS = ("actor", "action", "repo", "since", "until")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_NAIVE_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\Z")


def _utc(value: str) -> str:
    """A day (`2024-05-01`) or a time without a zone, read as UTC; others as given."""
    if _DATE_RE.match(value):
        return value + "T00:00:00Z"
    if _NAIVE_RE.match(value):
        return value.replace(" ", "T") + "Z"
    return value


async def query_audit(
    web: Any,
    viewer: Viewer,
    filters: dict[str, str],
    limit: int,
    cursor: str | None = None,
) -> dict:
    """A page of the audit entries matching `filters` (the non-empty ones of
    AUDIT_FILTERS), after `cursor`.

    People type what they see: `actor` may be a login as well as `user-42` or
    `system`, and `since`/`until` a day or a time without a zone (UTC). am
    answers the query (`am_repo_db.query_audit {actor, query: {...}}`); its
    refusals (a malformed action or time) come back as AmError(400).
    """
    query: dict[str, Any] = {k: v for k, v in filters.items() if k in AUDIT_FILTERS and v}
    actor = query.get("actor")
    if actor is not None and actor != "system" and not re.fullmatch(r"user-[1-9]\d*", actor):
        try:
            query["actor"] = (await web.am.get_user(viewer.id, actor))["id"]
        except AmError as exc:
            if exc.status not in (400, 404):
                raise
            raise AmError(400, f"no user {actor[:64]!r} to filter by", "bad_request") from None
    for bound in ("since", "until"):
        if bound in query:
            query[bound] = _utc(query[bound])
    return await web.am.query_audit(viewer.id, {**query, "limit": limit, "cursor": cursor})
