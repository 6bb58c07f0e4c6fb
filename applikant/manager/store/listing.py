"""The repository lists, page by page (paging.py), each page a few index ranges.

The site's list is ordered by id (creation), so that every source of access
is an index range in that same order and a page is their merge:

- site admins, am itself and listings for no one in particular: the primary
  key from the cursor on;
- anonymous visitors: `repos_public` (is_public, id);
- a user: the public ones, the ones owned by the user or by one of their
  groups (`repos_by_owner`, one range per owner), and the ones granted to the
  user or to one of their groups (`repo_perms_by_grantee`, one range per
  grantee). Each range gives at most `limit + 1` ids after the cursor (all
  ranges in one statement, `UNION ALL` of their subqueries); the page is the
  first `limit + 1` distinct ids of their merge. The cost is the number of the
  user's groups times the page size, not the size of the site.

One owner's list (a user's or group's page) is ordered by name, one range of
`(owner_id, name)`; a viewer who neither owns it nor belongs to the owning
group sees the public and granted ones among them, checked row by row (the cost
of the owner's own list, not of the site).

`q` (a search) filters each range; finding rare matches then reads further.
"""

from __future__ import annotations

from typing import Any

from applikant.manager.errors import BadRequest
from applikant.manager.store.core import Query, Row
from applikant.manager.store.paging import Page, cut, decode, encode, like_pattern, merged
from applikant.manager.store.rows import REPO_SELECT, json_time, owner_row, user_row

__all__ = ["ARMS_SQL", "readable_ids", "repo_json_from_row", "repo_page"]

# The ranges of the arms, oldest first; `_ordered` turns one into newest first.
ARMS_SQL = {
    "all": "SELECT r.id FROM repos r WHERE r.id > ? ORDER BY r.id LIMIT ?",
    "public": "SELECT r.id FROM repos r WHERE r.is_public = 1 AND r.id > ? ORDER BY r.id LIMIT ?",
    "owned": "SELECT r.id FROM repos r WHERE r.owner_id = ? AND r.id > ? ORDER BY r.id LIMIT ?",
    "granted": "SELECT p.repo_id FROM repo_perms p"
    " WHERE p.grantee_id = ? AND p.repo_id > ? ORDER BY p.repo_id LIMIT ?",
    # A search reads the repository of each grant (its name, its description).
    "granted_search": "SELECT r.id FROM repo_perms p JOIN repos r ON r.id = p.repo_id"
    " WHERE p.grantee_id = ? AND p.repo_id > ? ORDER BY p.repo_id LIMIT ?",
    "groups": "SELECT group_id FROM group_members WHERE user_id = ?",
    "owner": REPO_SELECT + " WHERE r.owner_id = ? AND r.name > ? ORDER BY r.name LIMIT ?",
}
# A search joins the owner for the full name; the same ranges, filtered.
_SEARCH = (
    " AND (lower(r.name) LIKE ? ESCAPE '!' OR lower(r.description) LIKE ? ESCAPE '!'"
    " OR lower((SELECT o2.name FROM owners o2 WHERE o2.id = r.owner_id) || '/' || r.name)"
    " LIKE ? ESCAPE '!')"
)
# Whether the viewer may read a row of one owner's list they neither own nor
# belong to: public, or granted to them or to one of their groups.
_READABLE = (
    " AND (r.is_public = 1 OR EXISTS (SELECT 1 FROM repo_perms p WHERE p.repo_id = r.id"
    " AND (p.grantee_id = ? OR p.grantee_id IN"
    " (SELECT group_id FROM group_members WHERE user_id = ?))))"
)
_INFINITY = 1 << 62


def repo_json_from_row(row: Row) -> dict[str, Any]:
    """`Repo.model_dump(mode="json")` of the repository in `row`, built directly.

    Listings send hundreds of repositories; a model per row (and its validation
    and serialisation) cost ten times the query. Same keys in the same order,
    same values: tests compare the two.
    """
    # By position (REPO_SELECT's order): a name lookup per column costs more than the rest.
    number, _, owner, kind, name, description, public, branch, created = row
    return {
        "id": f"repo-{number}",
        "owner": owner,
        "owner_kind": kind,
        "name": name,
        "full_name": f"{owner}/{name}",
        "description": description,
        "is_public": bool(public),
        "default_branch": branch,
        "created_at": json_time(created),
    }


def _ordered(sql: str, newest_first: bool) -> str:
    """An arm's SQL, oldest first as written, or turned to newest first."""
    if not newest_first:
        return sql
    return (
        sql.replace("r.id > ?", "r.id < ?")
        .replace("p.repo_id > ?", "p.repo_id < ?")
        .replace("ORDER BY r.id", "ORDER BY r.id DESC")
        .replace("ORDER BY p.repo_id", "ORDER BY p.repo_id DESC")
    )


def _with_search(sql: str, search: str | None) -> tuple[str, list[object]]:
    """`sql` (an arm over `repos r`) filtered by the search, and its parameters."""
    if search is None:
        return sql, []
    head, order = sql.split(" ORDER BY ")
    like = like_pattern(search)
    return f"{head}{_SEARCH} ORDER BY {order}", [like, like, like]


def repo_page(
    q: Query,
    *,
    limit: int,
    cursor: str | None,
    owner: str | None,
    visible_to: str | None,
    public_only: bool,
    search: str | None,
    newest_first: bool,
) -> Page[dict[str, Any]]:
    """See Repos.page; `q` is the store's read (or write) query."""
    viewer: Row | None = None
    if visible_to is not None:
        viewer = user_row(q, visible_to)
        if viewer["disabled"]:
            return Page([], None, 0)
        if viewer["is_admin"]:
            viewer = None
    if owner is not None:
        return _owner_page(q, owner, limit, cursor, viewer, public_only, search)
    kind = "repos-newest" if newest_first else "repos"
    key = decode(kind, cursor, int)
    after = key[0] if key is not None else (_INFINITY if newest_first else 0)
    sql, values = _arms(q, viewer, public_only, search, after, limit + 1, newest_first)
    found = [row[0] for row in q.all(" UNION ALL ".join(sql), values)]
    ids = merged(found, limit + 1, newest_first)
    rows = _rows_by_id(q, ids[:limit])
    if len(ids) > limit:  # the cursor is the last id shown (even if it went meanwhile)
        return Page(rows, encode(kind, ids[limit - 1]))
    return Page(rows, None, len(rows) if key is None else None)


def readable_ids(q: Query, viewer: Row, limit: int) -> tuple[str, list[object]]:
    """One statement (and its parameters) whose rows are the ids of the first
    `limit` repositories `viewer` (an enabled user) may read, oldest first: the
    ranges of `repo_page`, merged by the database, so that nothing comes back
    but what the caller makes of them (the dashboard counts them).

    The UNION itself is ordered and limited, rather than putting every row of
    every range into one temporary B-tree and sorting that again (twice the
    cost when several ranges are full: a user who reads 10,000). Where the
    database merges the ranges lazily (`q.merges_ranges`: SQLite's MERGE
    (UNION) reads each range in its index's order and stops at `limit`) they
    are bare, with neither a sort nor a limit of their own; elsewhere each
    range is limited to `limit` ids, which the database then merges."""
    who = None if viewer["is_admin"] else viewer
    each = None if q.merges_ranges else limit
    parts, values = _arms(q, who, False, None, 0, each, False)
    union = " UNION ".join(parts)
    return f"SELECT id FROM ({union} ORDER BY 1 LIMIT ?) AS readable", [*values, limit]


def _arms(
    q: Query,
    viewer: Row | None,
    public_only: bool,
    search: str | None,
    after: int,
    each: int | None,
    newest_first: bool,
) -> tuple[list[str], list[object]]:
    """The ranges a list of the site's repositories merges (see the module
    docstring), each at most `each` ids after `after`: one SELECT per range
    (`arm0`, `arm1`, ...) and the parameters of them all, in order. With
    `each` None, the bare ranges (no order, no limit) for a UNION that orders
    and limits them itself (Query.merges_ranges)."""
    arms: list[tuple[str, list[object]]] = []
    if viewer is None and not public_only:
        arms.append((ARMS_SQL["all"], [after]))
    else:
        arms.append((ARMS_SQL["public"], [after]))
        if viewer is not None:
            ids = [viewer["id"], *(r[0] for r in q.all(ARMS_SQL["groups"], (viewer["id"],)))]
            arms += [(ARMS_SQL["owned"], [i, after]) for i in ids]
            granted = ARMS_SQL["granted" if search is None else "granted_search"]
            arms += [(granted, [i, after]) for i in ids]
    parts, values = [], []
    for i, (sql, params) in enumerate(arms):
        sql, extra = _with_search(_ordered(sql, newest_first), search)
        if each is None:
            parts.append(sql.split(" ORDER BY ")[0])
            values += [*params, *extra]
        else:
            parts.append(f"SELECT * FROM ({sql}) AS arm{i}")
            values += [*params, *extra, each]
    return parts, values


def _rows_by_id(q: Query, ids: list[int]) -> list[dict[str, Any]]:
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    found = {row["id"]: row for row in q.all(REPO_SELECT + f" WHERE r.id IN ({marks})", ids)}
    # A repository deleted between the ranges and this read is left out.
    return [repo_json_from_row(found[i]) for i in ids if i in found]


def _owner_page(
    q: Query,
    owner: str,
    limit: int,
    cursor: str | None,
    viewer: Row | None,
    public_only: bool,
    search: str | None,
) -> Page[dict[str, Any]]:
    key = decode("repos-of", cursor, str, str)
    orow = owner_row(q, owner)
    if orow is None or (key is not None and key[0].casefold() != orow["name"].casefold()):
        if orow is not None:
            raise BadRequest("cursor is not one this list gave (it is another owner's)")
        return Page([], None, 0)
    sql, params = ARMS_SQL["owner"], [orow["id"], key[1] if key else ""]
    filters: list[object] = []
    if public_only:
        sql = sql.replace(" ORDER BY", " AND r.is_public = 1 ORDER BY")
    elif viewer is not None and not _may_read_all_of(q, viewer, orow):
        sql = sql.replace(" ORDER BY", _READABLE + " ORDER BY")
        filters = [viewer["id"], viewer["id"]]
    sql, extra = _with_search(sql, search)
    rows = q.all(sql, (*params, *filters, *extra, limit + 1))
    return cut(
        [repo_json_from_row(r) for r in rows],
        limit,
        "repos-of",
        lambda item: (item["owner"], item["name"]),
        key is None,
    )


def _may_read_all_of(q: Query, viewer: Row, orow: Row) -> bool:
    """The owner, and members of the owning group, may read all of its repositories."""
    if orow["id"] == viewer["id"]:
        return True
    return orow["kind"] == "group" and (
        q.one(
            "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?",
            (orow["id"], viewer["id"]),
        )
        is not None
    )
