"""Repositories: `owner/name` records; the bare repositories on disk belong to af.

The store only records repositories and announces changes (`repo.created`,
`repo.renamed`, `repo.deleted`); af creates, moves and removes them on disk when
it hears of them. Names are compared case-insensitively within an owner, so
`team/App` and `team/app` cannot both exist (they would collide on
case-insensitive file systems and confuse people everywhere else).
"""

from __future__ import annotations

from typing import Any

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.names import check_branch_name, check_text, parse_repo_path
from applikant.manager.store import listing
from applikant.manager.store.core import Part, Row
from applikant.manager.store.paging import LIMIT_MAX, Page, check_limit, every
from applikant.manager.store.rows import REPO_SELECT, owner_row, repo_row
from applikant.schema.repos import Repo

DESCRIPTION_MAX = 1024


def repo_from_row(row: Row) -> Repo:
    return Repo(
        id=f"repo-{row['id']}",
        owner=row["owner"],
        owner_kind=row["owner_kind"],
        name=row["name"],
        full_name=f"{row['owner']}/{row['name']}",
        description=row["description"],
        is_public=bool(row["is_public"]),
        default_branch=row["default_branch"],
        created_at=row["created_at"],
    )


def _check_public(value: object) -> bool:
    if not isinstance(value, bool):
        raise BadRequest("is_public must be true or false")
    return value


class Repos(Part):
    """`store.repos`: repository records."""

    def create(
        self,
        path: str,
        *,
        actor: str,
        node: str | None = None,
        description: str = "",
        is_public: bool = False,
        default_branch: str = "main",
    ) -> Repo:
        """Record a new repository `owner/name` (`.git` optional).

        Raises BadRequest for a bad name, NotFound when the owner is neither a user
        nor a group, Conflict when the repository exists.
        """
        owner, name = parse_repo_path(path)
        check_text(description, "description", DESCRIPTION_MAX, multiline=True)
        _check_public(is_public)
        check_branch_name(default_branch)
        with self._core.write(actor, node) as tx:
            orow = owner_row(tx, owner)
            if orow is None:
                raise NotFound(f"no user or group named {owner!r}; create it first")
            clash = tx.one(REPO_SELECT + " WHERE r.owner_id = ? AND r.name = ?", (orow["id"], name))
            if clash is not None:
                raise Conflict(f"repository {clash['owner']}/{clash['name']} already exists")
            number = tx.insert(
                "INSERT INTO repos (owner_id, name, description, is_public, default_branch,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (orow["id"], name, description, int(is_public), default_branch, tx.now),
            )
            full = f"{orow['name']}/{name}"
            tx.audit("repo.create", full, id=f"repo-{number}", is_public=is_public)
            tx.event("repo.created", repo=full, id=f"repo-{number}")
            return repo_from_row(repo_row(tx, full))

    def get(self, path: str) -> Repo:
        """The repository `owner/name` (`.git` optional). Raises NotFound."""
        with self._core.read() as q:
            return repo_from_row(repo_row(q, path))

    def page(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        owner: str | None = None,
        visible_to: str | None = None,
        public_only: bool = False,
        q: str | None = None,
        newest_first: bool = False,
    ) -> Page[dict[str, Any]]:
        """One page of repositories, as the JSON-friendly dicts the service sends
        (`Repo.model_dump(mode="json")` of each, without building the models).

        Without `owner`, the site's repositories by id (oldest first, or newest
        first); with `owner`, that user's or group's by name. `visible_to` (a
        user) keeps those the user may read (all for site admins, none for
        disabled users); `public_only` keeps the public ones (what anonymous
        visitors see); `q` keeps those whose full name or description contains
        it (any case). Every page is one index range per source of access (see
        listing.py), whatever the size of the site.
        """
        check_limit(limit)
        if q is not None:
            q = check_text(q, "search", 100).strip().lower() or None
        with self._core.read() as q_:
            return listing.repo_page(
                q_,
                limit=limit,
                cursor=cursor,
                owner=owner,
                visible_to=visible_to,
                public_only=public_only,
                search=q,
                newest_first=newest_first,
            )

    def all(
        self,
        *,
        owner: str | None = None,
        visible_to: str | None = None,
        public_only: bool = False,
    ) -> list[Repo]:
        """Every repository `page` would list with these filters, as models."""
        return [
            Repo.model_validate(item)
            for item in every(
                lambda cursor: self.page(
                    limit=LIMIT_MAX,
                    cursor=cursor,
                    owner=owner,
                    visible_to=visible_to,
                    public_only=public_only,
                )
            )
        ]

    def update(
        self,
        path: str,
        *,
        actor: str,
        node: str | None = None,
        description: str | None = None,
        is_public: bool | None = None,
        default_branch: str | None = None,
    ) -> Repo:
        """Change description, visibility and/or default branch; None leaves a field."""
        changes: dict[str, object] = {}
        if description is not None:
            changes["description"] = check_text(
                description, "description", DESCRIPTION_MAX, multiline=True
            )
        if is_public is not None:
            changes["is_public"] = _check_public(is_public)
        if default_branch is not None:
            changes["default_branch"] = check_branch_name(default_branch)
        with self._core.write(actor, node) as tx:
            row = repo_row(tx, path)
            for column, value in changes.items():
                tx.run(
                    f"UPDATE repos SET {column} = ? WHERE id = ?",
                    (int(value) if isinstance(value, bool) else value, row["id"]),
                )
            full = f"{row['owner']}/{row['name']}"
            tx.audit("repo.update", full, **changes)
            tx.event("repo.updated", repo=full, id=f"repo-{row['id']}", **changes)
            return repo_from_row(repo_row(tx, full))

    def rename(self, path: str, new_path: str, *, actor: str, node: str | None = None) -> Repo:
        """Rename a repository, possibly to another owner (`alice/x` -> `team/y`).

        Grants and protected branches follow it. A change of case only is allowed.
        Raises NotFound for the repository or the new owner, Conflict if taken.
        """
        new_owner, new_name = parse_repo_path(new_path)
        with self._core.write(actor, node) as tx:
            row = repo_row(tx, path)
            orow = owner_row(tx, new_owner)
            if orow is None:
                raise NotFound(f"no user or group named {new_owner!r}")
            clash = tx.one(
                REPO_SELECT + " WHERE r.owner_id = ? AND r.name = ?", (orow["id"], new_name)
            )
            if clash is not None and clash["id"] != row["id"]:
                raise Conflict(f"repository {clash['owner']}/{clash['name']} already exists")
            tx.run(
                "UPDATE repos SET owner_id = ?, name = ? WHERE id = ?",
                (orow["id"], new_name, row["id"]),
            )
            old, new = f"{row['owner']}/{row['name']}", f"{orow['name']}/{new_name}"
            tx.audit("repo.rename", new, id=f"repo-{row['id']}", old=old, new=new)
            tx.event("repo.renamed", id=f"repo-{row['id']}", old=old, new=new)
            return repo_from_row(repo_row(tx, new))

    def delete(self, path: str, *, actor: str, node: str | None = None) -> Repo:
        """Delete a repository's record with its grants and protections; return it."""
        with self._core.write(actor, node) as tx:
            row = repo_row(tx, path)
            repo = repo_from_row(row)
            tx.run("DELETE FROM repos WHERE id = ?", (row["id"],))
            tx.audit("repo.delete", repo.full_name, id=repo.id)
            tx.event("repo.deleted", repo=repo.full_name, id=repo.id)
            return repo
