"""Paging of lists: one shape for every pager on the site (`_pager.html`).

A `Pager` holds the URL of the previous and the next page (empty: none), so a
template shows "← newer" / "older →" whatever the list is paged by: git-backed
lists use page numbers (`?page=N`, `git log --skip`, `numbered`), lists from am
a cursor (`?after=CURSOR`, the `next` of am's page, `keyset`): a keyset page
goes on from its cursor, and back to the first page (am's cursors only go
forward; the browser's history goes back).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request

__all__ = ["MAX_PAGE", "Pager", "cursor_of", "keyset", "numbered", "page_of", "url_with"]

MAX_PAGE = 100_000


@dataclass(frozen=True)
class Pager:
    prev: str = ""
    next: str = ""
    prev_label: str = "← Newer"
    next_label: str = "Older →"
    where: str = ""  # e.g. "page 3"

    @property
    def shown(self) -> bool:
        return bool(self.prev or self.next)


def page_of(request: Request) -> int:
    """The `page` query parameter (1 when absent or not a sensible number)."""
    text = request.query_params.get("page", "1")
    return int(text) if text.isdigit() and 1 <= int(text) <= MAX_PAGE else 1


def url_with(request: Request, **changes: str | int | None) -> str:
    """This page's path and query with `changes` applied (None removes a key)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    return request.url.path + ("?" + query if query else "")


def cursor_of(request: Request) -> str | None:
    """The `after` query parameter: the cursor of the page to show (None: the first)."""
    return request.query_params.get("after", "")[:512] or None


def keyset(request: Request, page: dict, **labels: str) -> Pager:
    """The pager of a list from am: on to its `next` cursor, back to the first page."""
    return Pager(
        prev=url_with(request, after=None) if cursor_of(request) else "",
        next=url_with(request, after=page["next"]) if page.get("next") else "",
        **{"prev_label": "← First page", "next_label": "Next →", **labels},
    )


def numbered(request: Request, page: int, has_more: bool, **labels: str) -> Pager:
    """The pager of a list paged by number, on `page`, with a next page if `has_more`."""
    return Pager(
        prev=url_with(request, page=page - 1 if page > 2 else None) if page > 1 else "",
        next=url_with(request, page=page + 1) if has_more else "",
        where=f"page {page}" if page > 1 or has_more else "",
        **labels,
    )
