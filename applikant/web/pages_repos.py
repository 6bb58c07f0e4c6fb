"""Repository pages: the list, creation, and settings.

    /repos                       list, newest first, with search (?q=), by cursor (?after=)
    /repos/new                   create
    /{owner}/{name}/settings     permissions, protected branches, rename, delete

The code browser is pages_code, history and changes pages_commits.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import gitread
from .am import AmError
from .common import readable_repo, require_login, viewer_of, web_of
from .paging import cursor_of, keyset
from .render import field, flash, read_form, redirect, render

PER_PAGE = 100


async def repos(request: Request) -> Response:
    """What the viewer may read, newest first, a page at a time (am pages it)."""
    viewer = await viewer_of(request)
    q = request.query_params.get("q", "").strip()[:100]
    found = await web_of(request).am.list_repos(
        viewer.id, q=q, newest_first=True, limit=PER_PAGE, cursor=cursor_of(request)
    )
    pager = keyset(request, found, prev_label="← Newest", next_label="Older →")
    return render(
        request, "repos.html", repos=found["items"], q=q, total=found["total"], pager=pager
    )


async def owners_for(request: Request, viewer) -> list[str]:
    """The viewer's login and their groups: where they may create repositories
    (a site admin may also name any other owner)."""
    groups = await web_of(request).am.groups_of(viewer.id, viewer.id)
    return [viewer.login, *sorted(groups, key=str.lower)]


async def repo_new(request: Request) -> Response:
    viewer = await require_login(request)
    return render(
        request,
        "repo_new.html",
        owners=await owners_for(request, viewer),
        values={"owner": viewer.login},
        error="",
    )


async def repo_create(request: Request) -> Response:
    viewer = await require_login(request)
    form = await read_form(request)
    values = {
        "owner": field(form, "other_owner", 64).strip()
        or field(form, "owner", 64).strip()
        or viewer.login,
        "name": field(form, "name", 100).strip(),
        "description": field(form, "description", 1024),
        "is_public": form.get("is_public") == "on",
        "default_branch": field(form, "default_branch", 255).strip() or "main",
    }
    try:
        repo = await web_of(request).am.create_repo(
            viewer.id,
            f"{values['owner']}/{values['name']}",
            description=values["description"],
            is_public=values["is_public"],
            default_branch=values["default_branch"],
        )
    except AmError as exc:
        if exc.status not in (400, 403, 404, 409):
            raise
        return render(
            request,
            "repo_new.html",
            status=exc.status,
            owners=await owners_for(request, viewer),
            values=values,
            error=exc.message,
        )
    flash(request, f"repository {repo['full_name']} created")
    return redirect(f"/{repo['full_name']}")


async def _open(request: Request, access: str = "read"):
    web = web_of(request)
    viewer = await viewer_of(request)
    repo, decision = await readable_repo(
        web, viewer, request.path_params["owner"], request.path_params["name"], access
    )
    path = gitread.repo_path(web.repo_root, repo["full_name"])
    return web, viewer, repo, decision, path


async def repo_settings(request: Request) -> Response:
    web, viewer, repo, decision, _path = await _open(request, "admin")
    am = web.am
    grants = await am.list_grants(viewer.id, repo["full_name"])
    protected = await am.list_protected(viewer.id, repo["full_name"])
    return render(
        request,
        "repo_settings.html",
        repo=repo,
        grants=grants,
        protected=protected,
        decision=decision,
    )


async def repo_settings_post(request: Request) -> Response:
    web, viewer, repo, _decision, _path = await _open(request, "admin")
    form = await read_form(request)
    am, full = web.am, repo["full_name"]
    action = field(form, "action", 30)
    where = f"/{full}/settings"
    try:
        if action == "update":
            await am.update_repo(
                viewer.id,
                full,
                description=field(form, "description", 1024),
                is_public=form.get("is_public") == "on",
                default_branch=field(form, "default_branch", 255).strip() or None,
            )
            flash(request, "settings saved")
        elif action == "grant":
            grantee = field(form, "grantee", 64).strip()
            level = field(form, "level", 10)
            await am.grant(viewer.id, full, grantee, level)
            flash(request, f"{grantee} now has {level} access")
        elif action == "revoke":
            grantee = field(form, "grantee", 64)
            await am.revoke(viewer.id, full, grantee)
            flash(request, f"access of {grantee} revoked")
        elif action == "protect":
            pattern = field(form, "pattern", 255).strip()
            await am.protect_branch(viewer.id, full, pattern, form.get("admins_only") == "on")
            flash(request, f"branches matching {pattern} are protected")
        elif action == "unprotect":
            pattern = field(form, "pattern", 255)
            await am.unprotect_branch(viewer.id, full, pattern)
            flash(request, f"protection of {pattern} removed")
        elif action == "rename":
            new = field(form, "new_path", 140).strip()
            renamed = await am.rename_repo(viewer.id, full, new)
            flash(request, f"renamed to {renamed['full_name']}")
            return redirect(f"/{renamed['full_name']}/settings")
        elif action == "delete":
            if field(form, "confirm", 140) != full:
                flash(request, f"type {full} to confirm the deletion", "error")
                return redirect(where)
            await am.delete_repo(viewer.id, full)
            flash(request, f"repository {full} deleted")
            return redirect("/repos")
        else:
            raise HTTPException(400, "unknown action")
    except AmError as exc:
        if exc.status not in (400, 404, 409):
            raise
        flash(request, exc.message, "error")
    return redirect(where)


def routes() -> list[Route]:
    return [
        Route("/repos", repos),
        Route("/repos/new", repo_new, methods=["GET"]),
        Route("/repos/new", repo_create, methods=["POST"]),
        Route("/{owner}/{name}/settings", repo_settings, methods=["GET"]),
        Route("/{owner}/{name}/settings", repo_settings_post, methods=["POST"]),
    ]
