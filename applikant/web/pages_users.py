"""Pages for users, their SSH keys, and groups.

Everyone logged in may look; site admins create and change accounts and groups;
a user manages their own keys. am checks the same rules again for every change.
Lists are am's pages (`?after=CURSOR`); a person's page shows the first page of
their repositories (all of them on `/{owner}`).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .am import AmError
from .common import require_admin, require_login, web_of
from .paging import cursor_of, keyset
from .render import field, flash, read_form, redirect, render
from .sessionflow import confirmed, renew_session


def _may_manage(viewer, user: dict) -> bool:
    return viewer.is_admin or viewer.id == user["id"]


PER_PAGE = 100
#: Repositories on a person's or group's page; the rest are on /{owner}.
REPOS_SHOWN = 50


async def users(request: Request) -> Response:
    viewer = await require_login(request)
    q = request.query_params.get("q", "").strip()[:100]
    found = await web_of(request).am.list_users(
        viewer.id, q=q, limit=PER_PAGE, cursor=cursor_of(request)
    )
    return render(request, "users.html", users=found["items"], q=q, pager=keyset(request, found))


async def _details(request: Request, viewer, user: dict) -> dict:
    """What a person's page shows besides the account: keys, groups, repositories."""
    am = web_of(request).am
    keys = (
        (await am.list_keys(viewer.id, user["id"], limit=1000))["items"]
        if _may_manage(viewer, user)
        else []
    )
    groups = [{"name": g} for g in await am.groups_of(viewer.id, user["id"])]
    repos = await am.list_repos(viewer.id, owner=user["login"], limit=REPOS_SHOWN)
    return {
        "user": user,
        "keys": keys,
        "groups": groups,
        "repos": repos["items"],
        "more_repos": repos["next"] is not None,
        "manage": _may_manage(viewer, user),
    }


async def user_new(request: Request) -> Response:
    await require_admin(request)
    return render(request, "user_new.html", values={}, error="")


async def user_create(request: Request) -> Response:
    viewer = await require_admin(request)
    form = await read_form(request)
    values = {
        "login": field(form, "login", 64).strip(),
        "display_name": field(form, "display_name", 128),
        "email": field(form, "email", 254).strip(),
        "password": field(form, "password", 1024) or None,
        "is_admin": form.get("is_admin") == "on",
    }
    try:
        user = await web_of(request).am.add_user(viewer.id, **values)
    except AmError as exc:
        if exc.status not in (400, 409):
            raise
        values.pop("password")
        return render(request, "user_new.html", status=exc.status, values=values, error=exc.message)
    flash(request, f"user {user['login']} created")
    return redirect(f"/users/{user['login']}")


async def user_detail(request: Request) -> Response:
    viewer = await require_login(request)
    am = web_of(request).am
    user = await am.get_user(viewer.id, request.path_params["login"])
    return render(
        request, "user.html", **await _details(request, viewer, user), key_error="", key_values={}
    )


async def _user_for_change(request: Request):
    viewer = await require_login(request)
    user = await web_of(request).am.get_user(viewer.id, request.path_params["login"])
    if not _may_manage(viewer, user):
        raise HTTPException(403, "you may only change your own account")
    return viewer, user


async def key_add(request: Request) -> Response:
    viewer, user = await _user_for_change(request)
    form = await read_form(request)
    key, title = field(form, "key", 16384).strip(), field(form, "title", 200).strip()
    am = web_of(request).am
    try:
        added = await am.add_key(viewer.id, user["id"], key, title or None)
    except AmError as exc:
        if exc.status not in (400, 409):
            raise
        return render(
            request,
            "user.html",
            status=exc.status,
            **await _details(request, viewer, user),
            key_error=exc.message,
            key_values={"key": key, "title": title},
        )
    flash(request, f"key {added['fingerprint']} added")
    return redirect(f"/users/{user['login']}")


async def key_remove(request: Request) -> Response:
    viewer, user = await _user_for_change(request)
    form = await read_form(request)
    am = web_of(request).am
    kid = field(form, "id", 64)
    key = await am.get_key(viewer.id, kid)
    if key["user"] != user["id"]:
        raise AmError(404, f"{user['login']} has no key {kid!r}", "not_found")
    await am.remove_key(viewer.id, kid, user["id"])
    flash(request, f"key {key['fingerprint']} removed")
    return redirect(f"/users/{user['login']}")


async def user_details(request: Request) -> Response:
    """The display name and email, changed by the user or a site admin."""
    viewer, user = await _user_for_change(request)
    form = await read_form(request)
    try:
        await web_of(request).am.update_user(
            viewer.id,
            user["id"],
            display_name=field(form, "display_name", 128),
            email=field(form, "email", 254).strip(),
        )
    except AmError as exc:
        if exc.status != 400:
            raise
        flash(request, exc.message, "error")
        return redirect(f"/users/{user['login']}")
    flash(request, f"details of {user['login']} saved")
    return redirect(f"/users/{user['login']}")


async def user_delete(request: Request) -> Response:
    """Delete an account (site admins, not their own); its repositories go to
    `transfer_to` first, if given."""
    viewer = await require_admin(request)
    form = await read_form(request)
    am = web_of(request).am
    user = await am.get_user(viewer.id, request.path_params["login"])
    if user["id"] == viewer.id:
        raise HTTPException(400, "you cannot delete your own account")
    if field(form, "confirm", 64) != user["login"]:
        flash(request, "type the login to confirm the deletion", "error")
        return redirect(f"/users/{user['login']}")
    transfer = field(form, "transfer_to", 64).strip() or None
    try:
        done = await am.delete_user(viewer.id, user["id"], transfer)
    except AmError as exc:
        if exc.status not in (400, 404, 409):
            raise
        flash(request, exc.message, "error")
        return redirect(f"/users/{user['login']}")
    moved = f"; its repositories now belong to {transfer}" if done["transferred"] else ""
    flash(request, f"user {user['login']} deleted{moved}")
    return redirect("/users")


async def user_admin(request: Request) -> Response:
    viewer = await require_admin(request)
    form = await read_form(request)
    am = web_of(request).am
    user = await am.get_user(viewer.id, request.path_params["login"])
    action = field(form, "action", 20)
    if action in ("disable", "enable"):
        if user["id"] == viewer.id:
            raise HTTPException(400, "you cannot disable your own account")
        await am.set_disabled(viewer.id, user["id"], action == "disable")
    elif action in ("make_admin", "drop_admin"):
        await am.set_admin(viewer.id, user["id"], action == "make_admin")
    elif action == "password":
        password = field(form, "password", 1024)
        if not await confirmed(request, viewer, field(form, "current", 1024)):
            return redirect(f"/users/{user['login']}")
        await am.set_password(viewer.id, user["id"], password or None)
        if user["id"] == viewer.id:
            await renew_session(request, viewer)
    else:
        raise HTTPException(400, "unknown action")
    flash(request, f"user {user['login']} updated")
    return redirect(f"/users/{user['login']}")


async def _groups_page(request: Request, viewer) -> dict:
    found = await web_of(request).am.list_groups(
        viewer.id, limit=PER_PAGE, cursor=cursor_of(request)
    )
    return {"groups": found["items"], "pager": keyset(request, found)}


async def groups(request: Request) -> Response:
    viewer = await require_login(request)
    return render(
        request, "groups.html", **await _groups_page(request, viewer), error="", values={}
    )


async def group_create(request: Request) -> Response:
    viewer = await require_admin(request)
    form = await read_form(request)
    name, description = field(form, "name", 64).strip(), field(form, "description", 1024)
    am = web_of(request).am
    try:
        group = await am.create_group(viewer.id, name, description)
    except AmError as exc:
        if exc.status not in (400, 409):
            raise
        return render(
            request,
            "groups.html",
            status=exc.status,
            **await _groups_page(request, viewer),
            error=exc.message,
            values={"name": name, "description": description},
        )
    flash(request, f"group {group['name']} created")
    return redirect(f"/groups/{group['name']}")


async def group_detail(request: Request) -> Response:
    viewer = await require_login(request)
    am = web_of(request).am
    group = await am.get_group(viewer.id, request.path_params["name"])
    repos = await am.list_repos(viewer.id, owner=group["name"], limit=REPOS_SHOWN)
    return render(
        request,
        "group.html",
        group=group,
        repos=repos["items"],
        more_repos=repos["next"] is not None,
    )


async def group_change(request: Request) -> Response:
    viewer = await require_admin(request)
    form = await read_form(request)
    am = web_of(request).am
    group = await am.get_group(viewer.id, request.path_params["name"])
    action, login = field(form, "action", 20), field(form, "login", 64).strip()
    if action == "add":
        await am.add_member(viewer.id, group["name"], login)
        flash(request, f"{login} added to {group['name']}")
    elif action == "remove":
        await am.remove_member(viewer.id, group["name"], login)
        flash(request, f"{login} removed from {group['name']}")
    elif action == "delete":
        if field(form, "confirm", 64) != group["name"]:
            flash(request, "type the group's name to confirm its deletion", "error")
            return redirect(f"/groups/{group['name']}")
        await am.delete_group(viewer.id, group["name"])
        flash(request, f"group {group['name']} deleted")
        return redirect("/groups")
    else:
        raise HTTPException(400, "unknown action")
    return redirect(f"/groups/{group['name']}")


def routes() -> list[Route]:
    return [
        Route("/users", users),
        Route("/users/new", user_new, methods=["GET"]),
        Route("/users/new", user_create, methods=["POST"]),
        Route("/users/{login}", user_detail),
        Route("/users/{login}/keys", key_add, methods=["POST"]),
        Route("/users/{login}/keys/remove", key_remove, methods=["POST"]),
        Route("/users/{login}/admin", user_admin, methods=["POST"]),
        Route("/users/{login}/details", user_details, methods=["POST"]),
        Route("/users/{login}/delete", user_delete, methods=["POST"]),
        Route("/groups", groups, methods=["GET"]),
        Route("/groups", group_create, methods=["POST"]),
        Route("/groups/{name}", group_detail, methods=["GET"]),
        Route("/groups/{name}", group_change, methods=["POST"]),
    ]
