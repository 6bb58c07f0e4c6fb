"""Permissions on repositories, and the access decision every node relies on.

Levels are ordered read < write < admin. A user's level on a repository is the
highest of:
- admin: site admins (on every repository) and the user who owns the repository;
- write: members of the group that owns the repository (a team's repositories
  are the team's to push to; making someone a repository admin takes a grant);
- whatever explicit grants give the user directly or through any of their groups;
- read: everyone, anonymous visitors included, on a public repository.
Disabled accounts have no access at all, even to public repositories.

A denial never tells a user that a private repository exists: without read
access, a missing and a hidden repository get the same reason. Only site admins
are told plainly that a repository does not exist.

Every query here is an indexed lookup (see ACCESS_SQL; tests check the plans),
so a decision costs the same with 10 or 100,000 users, keys and repositories.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from applikant.manager.errors import BadRequest, NotFound, ServiceError
from applikant.manager.names import check_access_level, parse_repo_path
from applikant.manager.store.core import Part, Query, Row
from applikant.manager.store.rows import REPO_SELECT, grantee_row, parse_id, repo_row, user_row
from applikant.schema.base import AccessLevel
from applikant.schema.repos import AccessDecision, PermissionGrant

LEVEL_NUMBER = {"read": 1, "write": 2, "admin": 3}
LEVEL_NAME: dict[int, AccessLevel] = {1: "read", 2: "write", 3: "admin"}

ACCESS_SQL = {
    "user": "SELECT u.id, o.name AS login, u.is_admin, u.disabled"
    " FROM users u JOIN owners o ON o.id = u.id WHERE u.id = ?",
    "repo": REPO_SELECT + " WHERE o.name = ? AND r.name = ?",
    "owner_member": "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?",
    "direct": "SELECT level FROM repo_perms WHERE repo_id = ? AND grantee_id = ?",
    "via_groups": "SELECT p.level, o.name FROM group_members m"
    " JOIN repo_perms p ON p.repo_id = ? AND p.grantee_id = m.group_id"
    " JOIN owners o ON o.id = m.group_id"
    " WHERE m.user_id = ? ORDER BY p.level DESC, o.name LIMIT 1",
}


@dataclass
class Resolved:
    """Who asks about which repository, and the level they have on it."""

    who: str
    full_name: str
    repo_id: int | None
    level: int
    via: str
    viewer_is_admin: bool
    refused: str | None = None


def _hidden(full_name: str, access: str) -> str:
    return f"repository {full_name} does not exist or you have no {access} access"


def _access_user(q: Query, user: object) -> tuple[Row | None, str]:
    """The user's row (None if unknown) and how reasons name them: by login,
    as people know them (an unknown id as given)."""
    if not isinstance(user, str):
        raise BadRequest("user must be an id such as user-42, or None for anonymous")
    number = parse_id(user, "user")
    if number is not None:
        row = q.one(ACCESS_SQL["user"], (number,))
        return row, user if row is None else row["login"]
    try:
        row = user_row(q, user)
    except ServiceError:
        return None, user[:80]
    return row, row["login"]


def resolve(q: Query, user: str | None, path: object) -> Resolved:
    """Find the user and the repository and compute the user's level on it."""
    account = None
    who = "anonymous"
    if user is not None:
        account, who = _access_user(q, user)
        if account is None:
            return Resolved(who, str(path), None, 0, "", False, f"no account {who}")
        if account["disabled"]:
            return Resolved(who, str(path), None, 0, "", False, f"account {who} is disabled")
    try:
        owner, name = parse_repo_path(path)
    except BadRequest as exc:
        return Resolved(who, str(path), None, 0, "", False, exc.message)
    is_admin = account is not None and bool(account["is_admin"])
    repo = q.one(ACCESS_SQL["repo"], (owner, name))
    if repo is None:
        return Resolved(who, f"{owner}/{name}", None, 0, "", is_admin)
    full = f"{repo['owner']}/{repo['name']}"
    level, via = (1, "public repository") if repo["is_public"] else (0, "")
    if account is not None:
        uid = account["id"]
        if is_admin:
            return Resolved(who, full, repo["id"], 3, "site admin", True)
        if repo["owner_id"] == uid:
            return Resolved(who, full, repo["id"], 3, "owner", False)
        if repo["owner_kind"] == "group" and q.one(
            ACCESS_SQL["owner_member"], (repo["owner_id"], uid)
        ):
            level, via = 2, f"member of owning group {repo['owner']}"
        direct = q.one(ACCESS_SQL["direct"], (repo["id"], uid))
        if direct is not None and direct["level"] > level:
            level, via = direct["level"], "direct grant"
        group = q.one(ACCESS_SQL["via_groups"], (repo["id"], uid))
        if group is not None and group["level"] > level:
            level, via = group["level"], f"via group {group['name']}"
    return Resolved(who, full, repo["id"], level, via, is_admin)


def decide(r: Resolved, access: str) -> AccessDecision:
    """The decision for `access` once `resolve` has found the level."""
    if r.refused is not None:
        return AccessDecision(allowed=False, reason=r.refused)
    if r.repo_id is None:
        if r.viewer_is_admin:
            return AccessDecision(allowed=False, reason=f"no repository {r.full_name}")
        return AccessDecision(allowed=False, reason=_hidden(r.full_name, access))
    if r.level == 0:
        return AccessDecision(allowed=False, reason=_hidden(r.full_name, access))
    have = LEVEL_NAME[r.level]
    if r.level >= LEVEL_NUMBER[access]:
        return AccessDecision(
            allowed=True,
            level=have,
            reason=f"{r.who} has {have} access to {r.full_name} ({r.via})",
            repo=r.full_name,
        )
    return AccessDecision(
        allowed=False, level=have, reason=f"{r.who} has no {access} access to {r.full_name}"
    )


class Access(Part):
    """`store.access`: explicit grants, and the access decision."""

    def check(self, user: str | None, repo: str, access: str) -> AccessDecision:
        """May `user` (`user-42`, or None for anonymous) `access` `repo` (`owner/name`)?

        Never raises for a missing or malformed repository or an unknown user: those
        are denials with a reason. Raises BadRequest only for an access level other
        than read, write or admin.
        """
        check_access_level(access)
        with self._core.read() as q:
            return decide(resolve(q, user, repo), access)

    def grant(
        self, repo: str, grantee: str, level: str, *, actor: str, node: str | None = None
    ) -> PermissionGrant:
        """Give a user (login or id) or group `level` on `repo`, replacing any earlier grant."""
        check_access_level(level)
        with self._core.write(actor, node) as tx:
            rrow = repo_row(tx, repo)
            grow = grantee_row(tx, grantee)
            previous = tx.one(ACCESS_SQL["direct"], (rrow["id"], grow["id"]))
            tx.upsert(
                "repo_perms",
                ("repo_id", "grantee_id"),
                {"repo_id": rrow["id"], "grantee_id": grow["id"], "level": LEVEL_NUMBER[level]},
                ("level",),
            )
            full = f"{rrow['owner']}/{rrow['name']}"
            tx.audit(
                "perm.grant",
                full,
                grantee=grow["name"],
                grantee_kind=grow["kind"],
                level=level,
                previous=LEVEL_NAME[previous["level"]] if previous is not None else None,
            )
            tx.event("perm.granted", repo=full, grantee=grow["name"], level=level)
            return PermissionGrant(
                repo=full,
                grantee=grow["name"],
                grantee_kind=grow["kind"],
                level=cast(AccessLevel, level),
            )

    def revoke(self, repo: str, grantee: str, *, actor: str, node: str | None = None) -> None:
        """Remove the explicit grant of `grantee` on `repo`. Raises NotFound if none.

        Access from ownership, group ownership or site admin rights is unaffected.
        """
        with self._core.write(actor, node) as tx:
            rrow = repo_row(tx, repo)
            grow = grantee_row(tx, grantee)
            full = f"{rrow['owner']}/{rrow['name']}"
            removed = tx.run(
                "DELETE FROM repo_perms WHERE repo_id = ? AND grantee_id = ?",
                (rrow["id"], grow["id"]),
            )
            if removed == 0:
                raise NotFound(f"{grow['kind']} {grow['name']} has no grant on {full}")
            tx.audit("perm.revoke", full, grantee=grow["name"], grantee_kind=grow["kind"])
            tx.event("perm.revoked", repo=full, grantee=grow["name"])

    def grants(self, repo: str) -> list[PermissionGrant]:
        """The explicit grants on `repo`: users first, then groups, by name."""
        with self._core.read() as q:
            rrow = repo_row(q, repo)
            rows = q.all(
                "SELECT o.name, o.kind, p.level FROM repo_perms p JOIN owners o"
                " ON o.id = p.grantee_id WHERE p.repo_id = ? ORDER BY o.kind DESC, o.name",
                (rrow["id"],),
            )
        full = f"{rrow['owner']}/{rrow['name']}"
        return [
            PermissionGrant(
                repo=full,
                grantee=row["name"],
                grantee_kind=row["kind"],
                level=LEVEL_NAME[row["level"]],
            )
            for row in rows
        ]


__all__ = ["ACCESS_SQL", "LEVEL_NAME", "LEVEL_NUMBER", "Access", "Resolved", "decide", "resolve"]
