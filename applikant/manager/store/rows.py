"""Lookups the parts of the store share: users, owners, grantees, repositories.

Each takes the Query (or Tx) it runs on and raises NotFound with a message
naming what was asked for, or BadRequest for a malformed reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from applikant.manager.errors import BadRequest, NotFound
from applikant.manager.names import check_name, parse_repo_path
from applikant.manager.store.core import Query, Row
from applikant.schema.base import acts_as_system

_ID_RE = re.compile(r"(user|group|key|repo|token|session)-([1-9][0-9]{0,17})\Z")

USER_SELECT = (
    "SELECT u.id, o.name AS login, u.display_name, u.email, u.password_hash,"
    " u.is_admin, u.disabled, u.created_at FROM users u JOIN owners o ON o.id = u.id"
)
REPO_SELECT = (
    "SELECT r.id, r.owner_id, o.name AS owner, o.kind AS owner_kind, r.name,"
    " r.description, r.is_public, r.default_branch, r.created_at"
    " FROM owners o JOIN repos r ON r.owner_id = o.id"
)


def parse_id(ref: str, kind: str) -> int | None:
    """The number in a stable id such as `user-42`, or None when `ref` is not one."""
    match = _ID_RE.match(ref)
    if match is None or match.group(1) != kind:
        return None
    return int(match.group(2))


def json_time(text: str) -> str:
    """A stored time (core.format_time) as the models' JSON gives it: what
    `model.model_dump(mode="json")` makes of the datetime, without building one.
    pydantic leaves out a zero fraction (`...:56Z`) and keeps any other whole."""
    if len(text) == 27 and text.endswith(".000000Z"):
        return text[:19] + "Z"
    return text


def user_row(q: Query, ref: object) -> Row:
    """A user by id (`user-42`) or login."""
    if not isinstance(ref, str):
        raise BadRequest("a user must be given by login or id (user-42)")
    number = parse_id(ref, "user")
    if number is not None:
        row = q.one(USER_SELECT + " WHERE u.id = ?", (number,))
        if row is None:
            raise NotFound(f"no user {ref}")
        return row
    check_name(ref, "login")
    row = q.one(USER_SELECT + " WHERE o.name = ? AND o.kind = 'user'", (ref,))
    if row is None:
        raise NotFound(f"no user named {ref!r}")
    return row


def logins_of(q: Query, refs: Iterable[object]) -> dict[str, str]:
    """The logins of the `user-42` ids among `refs`, as they are now: one
    indexed lookup per 500; ids of deleted accounts (and anything else) are
    left out."""
    numbers = sorted({n for n in (parse_id(str(r), "user") for r in refs) if n is not None})
    logins: dict[str, str] = {}
    for i in range(0, len(numbers), 500):
        chunk = numbers[i : i + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in q.all(f"{USER_SELECT} WHERE u.id IN ({marks})", chunk):
            logins[f"user-{row['id']}"] = row["login"]
    return logins


def owner_row(q: Query, name: str) -> Row | None:
    """The user or group called `name` (id, name, kind), or None."""
    return q.one("SELECT id, name, kind FROM owners WHERE name = ?", (name,))


def grantee_row(q: Query, ref: object) -> Row:
    """A user (login or id) or a group (name or id): they share one namespace."""
    if isinstance(ref, str):
        number = parse_id(ref, "user") or parse_id(ref, "group")
        if number is not None:
            kind = ref.split("-", 1)[0]
            table = "users" if kind == "user" else "groups"  # not a deleted user's tombstone
            row = q.one(
                f"SELECT o.id, o.name, o.kind FROM owners o JOIN {table} t ON t.id = o.id"
                " WHERE o.id = ? AND o.kind = ?",
                (number, kind),
            )
            if row is None:
                raise NotFound(f"no {kind} {ref}")
            return row
    name = check_name(ref, "user or group name")
    row = owner_row(q, name)
    if row is None:
        raise NotFound(f"no user or group named {name!r}")
    return row


def repo_row(q: Query, path: object) -> Row:
    """The repository `owner/name` (`.git` optional)."""
    owner, name = parse_repo_path(path)
    row = q.one(REPO_SELECT + " WHERE o.name = ? AND r.name = ?", (owner, name))
    if row is None:
        raise NotFound(f"no repository {owner}/{name}")
    return row


def actor_is_admin(q: Query, actor: str) -> bool:
    """True for am itself (and the admin command line) and for enabled site
    admins: they may see who owns what."""
    if acts_as_system(actor):
        return True
    number = parse_id(actor, "user")
    if number is None:
        return False
    row = q.one("SELECT is_admin, disabled FROM users WHERE id = ?", (number,))
    return row is not None and bool(row["is_admin"]) and not row["disabled"]
