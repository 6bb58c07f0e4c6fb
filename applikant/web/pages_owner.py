"""`/{owner}`: a user's or a group's page, as on a forge.

It lists the owner's repositories that the viewer may read (am decides which),
and a group's members. An anonymous visitor sees an owner only through its
public repositories: an owner with none is "not found" to them, so the page
reveals no account that the rest of the site would not.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .am import AmError
from .common import viewer_of, web_of
from .paging import cursor_of, keyset
from .render import render

__all__ = ["routes"]

PER_PAGE = 100
# am's name rules (manager/names.py): anything else names no owner.
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")


async def owner_page(request: Request) -> Response:
    owner = request.path_params["owner"]
    if not _NAME_OK.match(owner):
        raise HTTPException(404, "there is nothing at this address")
    viewer = await viewer_of(request)
    am = web_of(request).am
    cursor = cursor_of(request)
    found = await am.list_repos(viewer.id, owner=owner, limit=PER_PAGE, cursor=cursor)
    repos = found["items"]
    if viewer.user is None and not repos and cursor is None:
        raise HTTPException(404, f"no user or group {owner!r} with public repositories")
    user = group = None
    try:
        user = await am.get_user(viewer.id, owner)
    except AmError as exc:
        if exc.status not in (400, 404):
            raise
        try:
            group = await am.get_group(viewer.id, owner)
        except AmError as exc2:
            if exc2.status not in (400, 404):
                raise
            raise HTTPException(404, f"no user or group {owner!r}") from None
    groups: list[dict[str, Any]] = []
    if user is not None and viewer.user is not None:
        groups = [{"name": g} for g in await am.groups_of(viewer.id, user["id"])]
    return render(
        request,
        "owner.html",
        owner=owner,
        user=user,
        group=group,
        repos=repos,
        groups=groups,
        pager=keyset(request, found),
    )


def routes() -> list[Route]:
    return [Route("/{owner}", owner_page, methods=["GET"])]
