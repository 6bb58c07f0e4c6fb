"""Pages for signing in and out, the dashboard, the user's settings (API tokens,
password, sessions) and the audit log.

A login starts a session in am and puts only its secret in the cookie; logout
ends it in am, so a copy of the cookie stops working too. A password change
ends every session of the user (am does it with the change) and starts a new
one for this browser. Creating a token or changing the password asks for the
current password unless the login is recent (auth.Auth.confirm_recent).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .am import AmError
from .auth import AuthError
from .common import (
    AUDIT_FILTERS,
    client_of,
    query_audit,
    require_admin,
    require_login,
    viewer_of,
    web_of,
)
from .githosts import git_host_reports
from .paging import cursor_of, keyset
from .render import field, flash, read_form, redirect, render
from .security import TOKEN_TITLE_MAX
from .sessionflow import begin, confirmed, renew_session


def _safe_next(value: str) -> str:
    """Only local paths: never redirect a visitor to another site after login."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value[:1000]
    return "/"


async def login_page(request: Request) -> Response:
    viewer = await viewer_of(request)
    if viewer.user is not None:
        return redirect(_safe_next(request.query_params.get("next", "/")))
    return render(
        request,
        "login.html",
        next=_safe_next(request.query_params.get("next", "/")),
        login="",
        error="",
    )


async def login_post(request: Request) -> Response:
    form = await read_form(request)
    login, password = field(form, "login", 200), field(form, "password", 1024)
    nxt = _safe_next(field(form, "next", 1000) or "/")
    request.state.viewer = await viewer_of(request)
    try:
        made = await web_of(request).auth.login(
            login, password, client_of(request), request.headers.get("user-agent", "")
        )
    except AuthError as exc:
        response = render(
            request, "login.html", status=exc.status, next=nxt, login=login, error=exc.message
        )
        if exc.status == 429:
            response.headers["retry-after"] = str(int(exc.retry_after) + 1)
        return response
    begin(request, made["session"]["secret"])
    return redirect(nxt)


async def logout(request: Request) -> Response:
    await read_form(request)
    viewer = await viewer_of(request)
    if viewer.session is not None and viewer.id is not None:
        try:
            await web_of(request).am.end_session(viewer.id, viewer.session["id"], viewer.id)
        except AmError as exc:
            if exc.status != 404:  # already ended elsewhere: nothing to do
                raise
    request.session.clear()
    return redirect("/login")


DASHBOARD_REPOS = 20
DASHBOARD_PUSHES = 10


async def dashboard(request: Request) -> Response:
    """What the viewer can read: their own and their groups' repositories, the
    latest pushes they may see, totals of what they may read (site totals for
    site admins), and the cluster for site admins.

    Every call to am is bounded, whatever the viewer may read: the viewer's
    groups (one indexed lookup), a page of repositories per owner until the list
    is full, the last pushes by a limit, the figures counted up to a cap, without
    the pushes to what they may read (not shown here; the costliest figure).
    """
    viewer = await viewer_of(request)
    if viewer.user is None:
        return redirect("/repos")
    am = web_of(request).am
    pushes = await am.recent_pushes(viewer.id, DASHBOARD_PUSHES)
    groups = await am.groups_of(viewer.id, viewer.id)
    mine: list[dict[str, Any]] = []
    for owner in [viewer.login, *sorted(groups, key=str.lower)]:
        if len(mine) > DASHBOARD_REPOS:
            break
        page = await am.list_repos(viewer.id, owner=owner, limit=DASHBOARD_REPOS + 1 - len(mine))
        mine.extend(page["items"])
    # am scopes them to what the viewer may read; the page shows no pushes figure.
    counts = await am.counts(viewer.id, pushes=False)
    nodes: list[dict[str, Any]] = []
    git_hosts: list[dict[str, Any]] = []
    cluster_error = ""
    if viewer.is_admin:
        try:
            nodes = await am.cluster()
        except AmError as exc:
            cluster_error = exc.message
        git_hosts = await git_host_reports(
            am.node, nodes, web_of(request).extra.get("af_name", "af")
        )
    return render(
        request,
        "dashboard.html",
        counts=counts,
        pushes=pushes,
        nodes=nodes,
        git_hosts=git_hosts,
        cluster_error=cluster_error,
        mine=mine[:DASHBOARD_REPOS],
        more_mine=len(mine) > DASHBOARD_REPOS,
        groups=groups,
    )


async def tokens_page(request: Request) -> Response:
    viewer = await require_login(request)
    am, auth = web_of(request).am, web_of(request).auth
    tokens = await am.list_tokens(viewer.id, viewer.id)
    sessions = await am.list_sessions(viewer.id, viewer.id)
    fresh = request.session.pop("new_token", None)
    return render(
        request,
        "tokens.html",
        tokens=tokens,
        fresh=fresh,
        sessions=sessions,
        current=viewer.session["id"] if viewer.session else "",
        recent=auth.recent(viewer),
    )


async def tokens_create(request: Request) -> Response:
    viewer = await require_login(request)
    form = await read_form(request)
    title = field(form, "title", TOKEN_TITLE_MAX).strip()
    if not title:
        flash(request, "give the token a title, so you know later what uses it", "error")
        return redirect("/settings/tokens")
    if not await confirmed(request, viewer, field(form, "current", 1024)):
        return redirect("/settings/tokens")
    made = await web_of(request).am.create_token(viewer.id, viewer.id, title)
    # Shown exactly once, on the next page, then only its hash remains.
    request.session["new_token"] = made["token"]
    return redirect("/settings/tokens")


async def tokens_revoke(request: Request) -> Response:
    viewer = await require_login(request)
    form = await read_form(request)
    await web_of(request).am.revoke_token(viewer.id, viewer.id, field(form, "id", 100))
    flash(request, "token revoked")
    return redirect("/settings/tokens")


async def password_post(request: Request) -> Response:
    viewer = await require_login(request)
    form = await read_form(request)
    current, new = field(form, "current", 1024), field(form, "new", 1024)
    web = web_of(request)
    try:
        await web.auth.password(viewer.login, current, client_of(request))
    except AuthError as exc:
        flash(
            request, "the current password is wrong" if exc.status == 401 else exc.message, "error"
        )
        return redirect("/settings/tokens")
    try:
        await web.am.set_password(viewer.id, viewer.id, new)
    except AmError as exc:
        if exc.status != 400:
            raise
        flash(request, exc.message, "error")
        return redirect("/settings/tokens")
    await renew_session(request, viewer)
    flash(request, "password changed; every other session is logged out")
    return redirect("/settings/tokens")


async def sessions_post(request: Request) -> Response:
    """End one of the viewer's sessions, or all of them ("log out everywhere")."""
    viewer = await require_login(request)
    form = await read_form(request)
    am = web_of(request).am
    action = field(form, "action", 20)
    if action == "end":
        sid = field(form, "id", 40)
        await am.end_session(viewer.id, sid, viewer.id)
        if viewer.session is not None and sid == viewer.session["id"]:
            request.session.clear()
            return redirect("/login")
        flash(request, "session logged out")
        return redirect("/settings/tokens")
    if action == "everywhere":
        await am.end_sessions(viewer.id, viewer.id)
        request.session.clear()
        return redirect("/login")
    raise HTTPException(400, "unknown action")


AUDIT_PAGE = 200


async def audit(request: Request) -> Response:
    viewer = await require_admin(request)
    web = web_of(request)
    filters = {k: request.query_params.get(k, "").strip()[:200] for k in AUDIT_FILTERS}
    error = ""
    found: dict[str, Any] = {"items": [], "next": None}
    try:
        found = await query_audit(web, viewer, filters, AUDIT_PAGE, cursor_of(request))
    except AmError as exc:
        if exc.status != 400:
            raise
        error = exc.message
    return render(
        request,
        "audit.html",
        entries=found["items"],
        filters=filters,
        error=error,
        pager=keyset(request, found, prev_label="← Newest", next_label="Older →"),
    )


def routes() -> list[Route]:
    return [
        Route("/", dashboard),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_post, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/settings/tokens", tokens_page, methods=["GET"]),
        Route("/settings/tokens", tokens_create, methods=["POST"]),
        Route("/settings/tokens/revoke", tokens_revoke, methods=["POST"]),
        Route("/settings/password", password_post, methods=["POST"]),
        Route("/settings/sessions", sessions_post, methods=["POST"]),
        Route("/audit", audit),
    ]
