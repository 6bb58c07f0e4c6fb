"""Pages for signing in and out, the dashboard, personal tokens and the audit log."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

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
from .render import field, flash, read_form, redirect, render
from .security import TOKEN_TITLE_MAX, new_csrf


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
        user = await web_of(request).auth.password(login, password, client_of(request))
    except AuthError as exc:
        response = render(
            request, "login.html", status=exc.status, next=nxt, login=login, error=exc.message
        )
        if exc.status == 429:
            response.headers["retry-after"] = str(int(exc.retry_after) + 1)
        return response
    # A fresh session: nothing from before the login survives (no fixation).
    request.session.clear()
    request.session["uid"] = user["id"]
    request.session["csrf"] = new_csrf()
    return redirect(nxt)


async def logout(request: Request) -> Response:
    await read_form(request)
    request.session.clear()
    return redirect("/login")


DASHBOARD_REPOS = 20
DASHBOARD_PUSHES = 10


async def dashboard(request: Request) -> Response:
    """What the viewer can read: their own and their groups' repositories, the
    latest pushes they may see; site totals and the cluster for site admins.

    Every call to am is bounded: one owner at a time, pushes by a limit.
    """
    viewer = await viewer_of(request)
    if viewer.user is None:
        return redirect("/repos")
    am = web_of(request).am
    pushes = await am.recent_pushes(viewer.id, DASHBOARD_PUSHES)
    groups = [g["name"] for g in await am.list_groups(viewer.id) if viewer.login in g["members"]]
    mine: list[dict[str, Any]] = []
    for owner in [viewer.login, *sorted(groups, key=str.lower)]:
        if len(mine) > DASHBOARD_REPOS:
            break
        mine.extend(await am.list_repos(viewer.id, owner=owner))
    counts: dict[str, Any] = {}
    nodes: list[dict[str, Any]] = []
    git_hosts: list[dict[str, Any]] = []
    cluster_error = ""
    if viewer.is_admin:
        counts = await am.counts(viewer.id)
        try:
            nodes = await am.cluster()
        except AmError as exc:
            cluster_error = exc.message
        git_hosts = await git_host_reports(
            am.node, nodes, web_of(request).extra.get("af_name", "af")
        )
    logins = {u["id"]: u["login"] for u in await am.list_users(viewer.id)} if pushes else {}
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
        logins=logins,
    )


async def tokens_page(request: Request) -> Response:
    viewer = await require_login(request)
    tokens = await web_of(request).am.list_tokens(viewer.id, viewer.id)
    fresh = request.session.pop("new_token", None)
    return render(request, "tokens.html", tokens=tokens, fresh=fresh)


async def tokens_create(request: Request) -> Response:
    viewer = await require_login(request)
    form = await read_form(request)
    title = field(form, "title", TOKEN_TITLE_MAX).strip()
    if not title:
        flash(request, "give the token a title, so you know later what uses it", "error")
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
    flash(request, "password changed")
    return redirect("/settings/tokens")


async def audit(request: Request) -> Response:
    viewer = await require_admin(request)
    filters = {k: request.query_params.get(k, "").strip()[:200] for k in AUDIT_FILTERS}
    error = ""
    entries: list[dict] = []
    try:
        entries = await query_audit(web_of(request), viewer, filters, limit=200)
    except AmError as exc:
        if exc.status != 400:
            raise
        error = exc.message
    logins = {u["id"]: u["login"] for u in await web_of(request).am.list_users(viewer.id)}
    return render(
        request, "audit.html", entries=entries, filters=filters, error=error, logins=logins
    )


async def login_redirect(request: Request) -> Response:
    return redirect("/login?next=" + quote(request.url.path))


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
        Route("/audit", audit),
    ]
