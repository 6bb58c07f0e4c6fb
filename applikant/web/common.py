"""Small helpers every handler uses: who is asking, and who may see what."""

from __future__ import annotations

import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request

from .am import AmError
from .auth import Viewer
from .together import gather

__all__ = [
    "AUDIT_FILTERS",
    "client_of",
    "query_audit",
    "readable_repo",
    "require_admin",
    "require_login",
    "viewer_and_repo",
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
        cached = await web_of(request).auth.session_viewer(request.session, client_of(request))
        request.state.viewer = cached
    return cached


async def viewer_and_repo(
    request: Request, owner: str, name: str, access: str = "read"
) -> tuple[Viewer, dict, dict]:
    """The viewer, the repository and the decision when the viewer has `access`
    to `owner/name`; AmError(404/403) otherwise (see `readable_repo`).

    With a session, am answers the session and the access in one call
    (`resolve_repo`), both as they are now: nothing of either is kept."""
    web = web_of(request)
    if "session" in request.scope and getattr(request.state, "viewer", None) is None:
        try:
            viewer, found = await web.auth.session_repo(
                request.session, client_of(request), f"{owner}/{name}", access
            )
        except AmError as exc:
            if exc.kind != "no_such_method":
                raise
            # An am from before resolve_repo: the session, then the access.
            viewer, found = await web.auth.session_repo(request.session, client_of(request))
        request.state.viewer = viewer
        if found is not None and "decision" in found:
            repo, decision = _decided(found["decision"], found["repo"], access)
            return viewer, repo, decision
    viewer = await viewer_of(request)
    repo, decision = await readable_repo(web, viewer, owner, name, access)
    return viewer, repo, decision


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
    return await _readable_repo_for(web, viewer.id, owner, name, access)


async def _readable_repo_for(
    web: Any, user: str | None, owner: str, name: str, access: str = "read"
) -> tuple[dict, dict]:
    path = f"{owner}/{name}"

    async def repo_or_error() -> Any:
        try:
            return await web.am.get_repo(user, path)
        except AmError as exc:
            return exc

    # Both questions at once (one round trip to am, not two); the decision is
    # read first, so a refusal is answered as before, whatever get_repo said.
    decision, repo = await gather(lambda: web.am.check_access(user, path, access), repo_or_error)
    return _decided(decision, repo, access)


def _decided(decision: dict, repo: Any, access: str) -> tuple[dict, dict]:
    """(repo, decision) for an allowed decision; the refusal as AmError otherwise."""
    if not decision["allowed"]:
        if access != "read" and decision.get("level"):
            raise AmError(403, decision["reason"], "forbidden")
        raise AmError(404, decision["reason"], "not_found")
    if isinstance(repo, AmError):
        raise repo
    if not isinstance(repo, dict):
        raise AmError(404, "repository not found", "not_found")
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
