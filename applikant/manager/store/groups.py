"""Groups (teams): named sets of users that can own repositories and receive grants.

A group's name lives in the same namespace as logins, so `owner/repo` always
names one owner. A group that still owns repositories cannot be deleted: its
repositories would be orphaned on disk and in the database.
"""

from __future__ import annotations

from applikant.manager.errors import Conflict, NotFound
from applikant.manager.names import check_name, check_owner_name, check_text
from applikant.manager.store.core import Part, Query, Row
from applikant.manager.store.paging import LIMIT_MAX, Page, check_limit, cut, decode, every
from applikant.manager.store.rows import owner_row, user_row
from applikant.schema.users import Group

DESCRIPTION_MAX = 1024
_GROUP_SELECT = (
    "SELECT g.id, o.name, g.description, g.created_at FROM owners o JOIN groups g ON g.id = o.id"
)
GROUPS_PAGE_SQL = _GROUP_SELECT + " WHERE o.kind = 'group' AND o.name > ? ORDER BY o.name LIMIT ?"


def _group_row(q: Query, name: object) -> Row:
    check_name(name, "group name")
    row = q.one(_GROUP_SELECT + " WHERE o.name = ?", (name,))
    if row is None:
        raise NotFound(f"no group named {name!r}")
    return row


def _group_model(q: Query, row: Row) -> Group:
    members = q.all(
        "SELECT o.name FROM group_members m JOIN owners o ON o.id = m.user_id"
        " WHERE m.group_id = ? ORDER BY o.name",
        (row["id"],),
    )
    return Group(
        id=f"group-{row['id']}",
        name=row["name"],
        description=row["description"],
        members=[m["name"] for m in members],
        created_at=row["created_at"],
    )


class Groups(Part):
    """`store.groups`: teams and their members."""

    def create(
        self, name: str, *, actor: str, node: str | None = None, description: str = ""
    ) -> Group:
        """Create an empty group. Raises Conflict when a user or group has the name."""
        check_owner_name(name, "group name")
        check_text(description, "description", DESCRIPTION_MAX, multiline=True)
        with self._core.write(actor, node) as tx:
            taken = owner_row(tx, name)
            if taken is not None:
                raise Conflict(
                    f"the name {name!r} is already taken by the {taken['kind']} {taken['name']!r}"
                )
            number = tx.insert("INSERT INTO owners (name, kind) VALUES (?, 'group')", (name,))
            tx.run(
                "INSERT INTO groups (id, description, created_at) VALUES (?, ?, ?)",
                (number, description, tx.now),
            )
            tx.audit("group.create", group=name)
            tx.event("group.created", group=name)
            return _group_model(tx, _group_row(tx, name))

    def delete(self, name: str, *, actor: str, node: str | None = None) -> None:
        """Delete a group with its memberships and grants. Refused while it owns repos."""
        with self._core.write(actor, node) as tx:
            row = _group_row(tx, name)
            owned = tx.scalar("SELECT count(*) FROM repos WHERE owner_id = ?", (row["id"],))
            if owned:
                raise Conflict(
                    f"group {row['name']!r} owns {owned} repositories; "
                    "delete them or move them to another owner first"
                )
            tx.run("DELETE FROM owners WHERE id = ?", (row["id"],))
            tx.audit("group.delete", group=row["name"])
            tx.event("group.deleted", group=row["name"])

    def get(self, name: str) -> Group:
        """A group with its members. Raises NotFound."""
        with self._core.read() as q:
            return _group_model(q, _group_row(q, name))

    def page(self, *, limit: int = 100, cursor: str | None = None) -> Page[Group]:
        """One page of groups with their members, ordered by name."""
        check_limit(limit)
        key = decode("groups", cursor, str)
        with self._core.read() as q:
            rows = q.all(GROUPS_PAGE_SQL, (key[0] if key else "", limit + 1))
            groups = [_group_model(q, row) for row in rows]
        return cut(groups, limit, "groups", lambda g: (g.name,), key is None)

    def all(self) -> list[Group]:
        """All groups with their members, ordered by name."""
        return list(every(lambda cursor: self.page(limit=LIMIT_MAX, cursor=cursor)))

    def of(self, user: str) -> list[str]:
        """The names of the groups `user` belongs to, ordered by name."""
        with self._core.read() as q:
            uid = user_row(q, user)["id"]
            rows = q.all(
                "SELECT o.name FROM group_members m JOIN owners o ON o.id = m.group_id"
                " WHERE m.user_id = ? ORDER BY o.name",
                (uid,),
            )
        return [row["name"] for row in rows]

    def add_member(self, group: str, user: str, *, actor: str, node: str | None = None) -> Group:
        """Add `user` to `group`. Raises Conflict if already a member."""
        with self._core.write(actor, node) as tx:
            grow = _group_row(tx, group)
            urow = user_row(tx, user)
            exists = tx.one(
                "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?",
                (grow["id"], urow["id"]),
            )
            if exists:
                raise Conflict(f"{urow['login']} is already a member of {grow['name']}")
            tx.run(
                "INSERT INTO group_members (group_id, user_id) VALUES (?, ?)",
                (grow["id"], urow["id"]),
            )
            uid = f"user-{urow['id']}"
            tx.audit("group.add_member", group=grow["name"], user=uid, login=urow["login"])
            tx.event("group.member_added", group=grow["name"], user=uid)
            return _group_model(tx, grow)

    def remove_member(self, group: str, user: str, *, actor: str, node: str | None = None) -> Group:
        """Remove `user` from `group`. Raises NotFound if not a member."""
        with self._core.write(actor, node) as tx:
            grow = _group_row(tx, group)
            urow = user_row(tx, user)
            removed = tx.run(
                "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                (grow["id"], urow["id"]),
            )
            if removed == 0:
                raise NotFound(f"{urow['login']} is not a member of {grow['name']}")
            uid = f"user-{urow['id']}"
            tx.audit("group.remove_member", group=grow["name"], user=uid, login=urow["login"])
            tx.event("group.member_removed", group=grow["name"], user=uid)
            return _group_model(tx, grow)
