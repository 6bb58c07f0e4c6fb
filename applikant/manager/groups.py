"""Groups (teams): named sets of users that can own repositories and receive grants.

A group's name lives in the same namespace as logins, so `owner/repo` always
names one owner. A group that still owns repositories cannot be deleted: its
repositories would be orphaned on disk and in the database.
"""

from __future__ import annotations

import sqlite3

from applikant.manager.base import StoreBase
from applikant.manager.errors import Conflict, NotFound
from applikant.manager.models import Group
from applikant.manager.names import check_name, check_owner_name, check_text

DESCRIPTION_MAX = 1024


class GroupsMixin(StoreBase):
    def _group_row(self, conn: sqlite3.Connection, name: object) -> sqlite3.Row:
        check_name(name, "group name")
        row = conn.execute(
            "SELECT g.id, o.name, g.description, g.created_at FROM owners o"
            " JOIN groups g ON g.id = o.id WHERE o.name = ?",
            (name,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no group named {name!r}")
        return row

    def _group_model(self, conn: sqlite3.Connection, row: sqlite3.Row) -> Group:
        members = conn.execute(
            "SELECT o.name FROM group_members m JOIN owners o ON o.id = m.user_id"
            " WHERE m.group_id = ? ORDER BY o.name",
            (row["id"],),
        ).fetchall()
        return Group(
            id=f"group-{row['id']}",
            name=row["name"],
            description=row["description"],
            members=[m["name"] for m in members],
            created_at=row["created_at"],
        )

    def create_group(
        self, name: str, *, actor: str, node: str | None = None, description: str = ""
    ) -> Group:
        """Create an empty group. Raises Conflict when a user or group has the name."""
        check_owner_name(name, "group name")
        check_text(description, "description", DESCRIPTION_MAX, multiline=True)
        with self._write(actor, node) as tx:
            taken = self._owner_row(tx.conn, name)
            if taken is not None:
                raise Conflict(
                    f"the name {name!r} is already taken by the {taken['kind']} {taken['name']!r}"
                )
            cur = tx.conn.execute("INSERT INTO owners (name, kind) VALUES (?, 'group')", (name,))
            tx.conn.execute(
                "INSERT INTO groups (id, description, created_at) VALUES (?, ?, ?)",
                (cur.lastrowid, description, tx.now),
            )
            tx.audit("group.create", group=name)
            tx.event("group.created", group=name)
            return self._group_model(tx.conn, self._group_row(tx.conn, name))

    def delete_group(self, name: str, *, actor: str, node: str | None = None) -> None:
        """Delete a group with its memberships and grants. Refused while it owns repos."""
        with self._write(actor, node) as tx:
            row = self._group_row(tx.conn, name)
            (owned,) = tx.conn.execute(
                "SELECT count(*) FROM repos WHERE owner_id = ?", (row["id"],)
            ).fetchone()
            if owned:
                raise Conflict(
                    f"group {row['name']!r} owns {owned} repositories; "
                    "delete them or move them to another owner first"
                )
            tx.conn.execute("DELETE FROM owners WHERE id = ?", (row["id"],))
            tx.audit("group.delete", group=row["name"])
            tx.event("group.deleted", group=row["name"])

    def get_group(self, name: str) -> Group:
        """A group with its members. Raises NotFound."""
        with self._read() as conn:
            return self._group_model(conn, self._group_row(conn, name))

    def list_groups(self) -> list[Group]:
        """All groups with their members, ordered by name."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT g.id, o.name, g.description, g.created_at FROM groups g"
                " JOIN owners o ON o.id = g.id ORDER BY o.name"
            ).fetchall()
            return [self._group_model(conn, row) for row in rows]

    def groups_of(self, user: str) -> list[str]:
        """The names of the groups `user` belongs to, ordered by name."""
        with self._read() as conn:
            uid = self._user_row(conn, user)["id"]
            rows = conn.execute(
                "SELECT o.name FROM group_members m JOIN owners o ON o.id = m.group_id"
                " WHERE m.user_id = ? ORDER BY o.name",
                (uid,),
            ).fetchall()
        return [row["name"] for row in rows]

    def add_member(self, group: str, user: str, *, actor: str, node: str | None = None) -> Group:
        """Add `user` to `group`. Raises Conflict if already a member."""
        with self._write(actor, node) as tx:
            grow = self._group_row(tx.conn, group)
            urow = self._user_row(tx.conn, user)
            exists = tx.conn.execute(
                "SELECT 1 FROM group_members WHERE group_id = ? AND user_id = ?",
                (grow["id"], urow["id"]),
            ).fetchone()
            if exists:
                raise Conflict(f"{urow['login']} is already a member of {grow['name']}")
            tx.conn.execute(
                "INSERT INTO group_members (group_id, user_id) VALUES (?, ?)",
                (grow["id"], urow["id"]),
            )
            uid = f"user-{urow['id']}"
            tx.audit("group.add_member", group=grow["name"], user=uid, login=urow["login"])
            tx.event("group.member_added", group=grow["name"], user=uid)
            return self._group_model(tx.conn, grow)

    def remove_member(self, group: str, user: str, *, actor: str, node: str | None = None) -> Group:
        """Remove `user` from `group`. Raises NotFound if not a member."""
        with self._write(actor, node) as tx:
            grow = self._group_row(tx.conn, group)
            urow = self._user_row(tx.conn, user)
            cur = tx.conn.execute(
                "DELETE FROM group_members WHERE group_id = ? AND user_id = ?",
                (grow["id"], urow["id"]),
            )
            if cur.rowcount == 0:
                raise NotFound(f"{urow['login']} is not a member of {grow['name']}")
            uid = f"user-{urow['id']}"
            tx.audit("group.remove_member", group=grow["name"], user=uid, login=urow["login"])
            tx.event("group.member_removed", group=grow["name"], user=uid)
            return self._group_model(tx.conn, grow)
