"""Keyset paging: one page of a list, and the opaque cursor to the next one.

Every list the store serves page by page is ordered by a key that is unique
and covered by an index (a repository's id, a login, an audit entry's id), and
a page is "the first `limit` rows after the cursor's key": one index range
read, whatever the size of the site and however far into the list. Rows added
or removed between two pages shift nothing: no row that stays is skipped or
shown twice (an id-ordered list simply shows new rows when it gets to them).

A cursor is the key of the last row of a page, with the name of its list, as
unpadded base64url of a small JSON array. It is opaque to callers (they hand
back what they were given), checked on the way in (a cursor of another list,
or a hand-made one that does not decode, is BadRequest), and carries no secret:
what it names is what the page already showed.

`total` is set only when it costs nothing: on a first page that holds the whole
list. Counting a filtered list of 100,000 rows would cost more than the page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from applikant.manager.errors import BadRequest

__all__ = [
    "LIMIT_MAX",
    "Page",
    "check_limit",
    "cut",
    "decode",
    "encode",
    "every",
    "like_pattern",
    "merged",
]

T = TypeVar("T")
U = TypeVar("U")

#: The largest page any list serves (a page travels in one frame).
LIMIT_MAX = 1000
_CURSOR_MAX = 512


@dataclass(frozen=True)
class Page(Generic[T]):
    """`items`, the cursor of the page after them (None: this was the last), and
    how many there are in all when that was free to know."""

    items: list[T]
    next: str | None = None
    total: int | None = None

    def map(self, fn: Callable[[T], U]) -> Page[U]:
        return Page([fn(item) for item in self.items], self.next, self.total)

    def as_json(self, dump: Callable[[T], Any] = lambda item: item) -> dict[str, Any]:
        """The page as a service answers it: {items, next, total}."""
        return {"items": [dump(i) for i in self.items], "next": self.next, "total": self.total}


def check_limit(limit: object, maximum: int = LIMIT_MAX) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise BadRequest(f"limit must be an integer from 1 to {maximum}")
    return limit


def encode(kind: str, *key: str | int) -> str:
    """The cursor that continues list `kind` after the row whose key is `key`."""
    text = json.dumps([kind, *key], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


def decode(kind: str, cursor: object, *types: type) -> tuple[Any, ...] | None:
    """The key in `cursor` (None for no cursor: the first page).

    Raises BadRequest when the cursor was not made by `encode(kind, ...)` with
    values of `types`: a cursor of another list or order, a truncated or a
    hand-made one.
    """
    if cursor is None or cursor == "":
        return None
    wrong = BadRequest(
        "cursor is not one this list gave (start again from the first page, without it)"
    )
    if not isinstance(cursor, str) or len(cursor) > _CURSOR_MAX or not cursor.isascii():
        raise wrong
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw.decode())
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise wrong from None
    if not isinstance(value, list) or len(value) != len(types) + 1 or value[0] != kind:
        raise wrong
    key = tuple(value[1:])
    for part, want in zip(key, types, strict=True):
        if not isinstance(part, want) or isinstance(part, bool):
            raise wrong
    return key


def cut(
    rows: Sequence[T], limit: int, kind: str, key: Callable[[T], tuple[str | int, ...]], first: bool
) -> Page[T]:
    """The page made of `rows` (a query's first `limit + 1` rows after the cursor):
    the first `limit`, and a cursor after the last of them when there are more."""
    if len(rows) > limit:
        shown = list(rows[:limit])
        return Page(shown, encode(kind, *key(shown[-1])))
    return Page(list(rows), None, len(rows) if first else None)


def every(fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
    """Every item of a paged list, page after page (`fetch(cursor)` gives one)."""
    cursor: str | None = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next is None:
            return
        cursor = page.next


def like_pattern(text: str) -> str:
    """`%text%` for `LIKE ? ESCAPE '!'`: the text's own % and _ match themselves."""
    escaped = text.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


def merged(ids: Iterable[int], limit: int, descending: bool) -> list[int]:
    """The first `limit` distinct `ids` in order (the ids of several ranges of at
    most `limit` each: a set and a sort are cheaper than a merge)."""
    return sorted(set(ids), reverse=descending)[:limit]
