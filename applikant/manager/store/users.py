"""Users: accounts with a stable id, a login, a password hash and two flags.

A disabled account can neither log in nor use its keys; it keeps everything.
A deleted account goes with its keys, tokens, memberships and grants, and is
refused while it owns repositories (they are deleted or transferred first,
services.user_db). Its id is never given again: its row in `owners` stays as
a tombstone (named `~deleted-<id>`, which no login can be, so the login is
free again), because its id lives on in audit entries, builds, webhooks and
the sessions of browsers that were logged in. The last enabled site admin
cannot be deleted.
Password hashing (tens of milliseconds) runs outside the store's lock so that it
never delays access checks. A password change or a disabled account ends all of
the user's web sessions in the same transaction (sessions.py).
"""

from __future__ import annotations

from applikant.manager.errors import BadRequest, Conflict
from applikant.manager.names import check_email, check_owner_name, check_password, check_text
from applikant.manager.store import sessions
from applikant.manager.store.core import Part, Row
from applikant.manager.store.paging import (
    LIMIT_MAX,
    Page,
    check_limit,
    cut,
    decode,
    every,
    like_pattern,
)
from applikant.manager.store.rows import USER_SELECT, json_time, owner_row, user_row
from applikant.schema.users import User

DISPLAY_NAME_MAX = 128
USERS_PAGE_SQL = USER_SELECT + " WHERE o.kind = 'user' AND o.name > ? ORDER BY o.name LIMIT ?"


def user_from_row(row: Row) -> User:
    return User(
        id=f"user-{row['id']}",
        login=row["login"],
        display_name=row["display_name"],
        email=row["email"],
        is_admin=bool(row["is_admin"]),
        disabled=bool(row["disabled"]),
        has_password=row["password_hash"] is not None,
        created_at=row["created_at"],
    )


def user_json_from_row(row: Row) -> dict[str, object]:
    """`user_from_row(row).model_dump(mode="json")`, built directly from the row
    (a page of users is a hundred of them; see listing.repo_json_from_row)."""
    number, login, display_name, email, password_hash, is_admin, disabled, created = row
    return {
        "id": f"user-{number}",
        "login": login,
        "display_name": display_name,
        "email": email,
        "is_admin": bool(is_admin),
        "disabled": bool(disabled),
        "has_password": password_hash is not None,
        "created_at": json_time(created),
    }


class Users(Part):
    """`store.users`: accounts."""

    def add(
        self,
        login: str,
        *,
        actor: str,
        node: str | None = None,
        display_name: str = "",
        email: str = "",
        password: str | None = None,
        is_admin: bool = False,
    ) -> User:
        """Create an account. Raises BadRequest for bad input, Conflict if the name is taken.

        The login shares its namespace with group names (both own repositories),
        case-insensitively. Without a password the account can use SSH keys only.
        """
        check_owner_name(login, "login")
        check_text(display_name, "display name", DISPLAY_NAME_MAX)
        check_email(email)
        passwords = self._core.passwords
        hashed = passwords.hash(check_password(password)) if password is not None else None
        with self._core.write(actor, node) as tx:
            taken = owner_row(tx, login)
            if taken is not None:
                raise Conflict(
                    f"the name {login!r} is already taken by the {taken['kind']} {taken['name']!r}"
                )
            user_id = tx.insert("INSERT INTO owners (name, kind) VALUES (?, 'user')", (login,))
            tx.run(
                "INSERT INTO users (id, display_name, email, password_hash, is_admin, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (user_id, display_name, email, hashed, int(bool(is_admin)), tx.now),
            )
            ref = f"user-{user_id}"
            tx.audit("user.add", user=ref, login=login, is_admin=bool(is_admin))
            tx.event("user.added", user=ref, login=login)
            return user_from_row(user_row(tx, ref))

    def get(self, ref: str) -> User:
        """The user with id `user-42` or with that login. Raises NotFound."""
        with self._core.read() as q:
            return user_from_row(user_row(q, ref))

    def page(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        include_disabled: bool = True,
        q: str | None = None,
    ) -> Page[dict[str, object]]:
        """One page of users, ordered by login (case-insensitively), as the
        JSON-friendly dicts the service sends: one range of the index of owners
        by kind and name. `q` keeps those whose login or display name contains
        it (any case), reading on until a page is full."""
        check_limit(limit)
        key = decode("users", cursor, str)
        sql, params = USERS_PAGE_SQL, [key[0] if key else ""]
        if not include_disabled:
            sql = sql.replace(" ORDER BY", " AND u.disabled = 0 ORDER BY")
        if q is not None and q.strip():
            like = like_pattern(check_text(q, "search", 100).strip().lower())
            sql = sql.replace(
                " ORDER BY",
                " AND (lower(o.name) LIKE ? ESCAPE '!' OR lower(u.display_name) LIKE ? ESCAPE '!')"
                " ORDER BY",
            )
            params += [like, like]
        with self._core.read() as q_:
            rows = q_.all(sql, (*params, limit + 1))
        return cut(
            [user_json_from_row(row) for row in rows],
            limit,
            "users",
            lambda u: (str(u["login"]),),
            key is None,
        )

    def all(self, *, include_disabled: bool = True) -> list[User]:
        """All users, ordered by login (case-insensitively)."""
        return [
            User.model_validate(item)
            for item in every(
                lambda cursor: self.page(
                    limit=LIMIT_MAX, cursor=cursor, include_disabled=include_disabled
                )
            )
        ]

    def update(
        self,
        ref: str,
        *,
        actor: str,
        node: str | None = None,
        display_name: str | None = None,
        email: str | None = None,
    ) -> User:
        """Change the display name and/or email; None leaves a field as it is."""
        if display_name is not None:
            check_text(display_name, "display name", DISPLAY_NAME_MAX)
        if email is not None:
            check_email(email)
        with self._core.write(actor, node) as tx:
            row = user_row(tx, ref)
            changes: dict[str, str] = {}
            if display_name is not None:
                changes["display_name"] = display_name
            if email is not None:
                changes["email"] = email
            for column, value in changes.items():
                tx.run(f"UPDATE users SET {column} = ? WHERE id = ?", (value, row["id"]))
            uid = f"user-{row['id']}"
            tx.audit("user.update", user=uid, login=row["login"], **changes)
            tx.event("user.updated", user=uid, login=row["login"])
            return user_from_row(user_row(tx, uid))

    def owned_repos(self, ref: str) -> list[str]:
        """The repositories the user owns, by full name."""
        with self._core.read() as q:
            row = user_row(q, ref)
            names = q.all("SELECT name FROM repos WHERE owner_id = ? ORDER BY name", (row["id"],))
        return [f"{row['login']}/{r[0]}" for r in names]

    def delete(self, ref: str, *, actor: str, node: str | None = None) -> User:
        """Delete an account (see the module docstring); return it as it was.

        Conflict while it owns repositories (naming them), or when it is the
        last enabled site admin; NotFound for an unknown user.
        """
        with self._core.write(actor, node) as tx:
            row = user_row(tx, ref)
            gone = user_from_row(row)
            owned = [
                r[0]
                for r in tx.all(
                    "SELECT name FROM repos WHERE owner_id = ? ORDER BY name", (row["id"],)
                )
            ]
            if owned:
                listed = ", ".join(f"{row['login']}/{n}" for n in owned[:10])
                more = f" and {len(owned) - 10} more" if len(owned) > 10 else ""
                raise Conflict(
                    f"{row['login']} owns {len(owned)} repositories ({listed}{more}); "
                    "delete them, or transfer them to another owner (--transfer-to)"
                )
            if row["is_admin"] and not row["disabled"]:
                others = tx.scalar(
                    "SELECT count(*) FROM users WHERE is_admin = 1 AND disabled = 0 AND id <> ?",
                    (row["id"],),
                )
                if not others:
                    raise Conflict(f"{row['login']} is the last site admin; make another one first")
            keys = tx.scalar("SELECT count(*) FROM ssh_keys WHERE user_id = ?", (row["id"],))
            tx.run("DELETE FROM users WHERE id = ?", (row["id"],))  # keys, tokens, memberships
            tx.run("DELETE FROM repo_perms WHERE grantee_id = ?", (row["id"],))
            tx.run(
                "UPDATE owners SET name = ? WHERE id = ?",
                (f"~deleted-{row['id']}", row["id"]),
            )
            tx.audit("user.delete", user=gone.id, login=gone.login, keys=keys)
            tx.event("user.deleted", user=gone.id, login=gone.login)
            return gone

    def _set_flag(
        self,
        ref: str,
        column: str,
        value: bool,
        actor: str,
        node: str | None,
        action: str,
        event: str,
    ) -> User:
        with self._core.write(actor, node) as tx:
            row = user_row(tx, ref)
            tx.run(f"UPDATE users SET {column} = ? WHERE id = ?", (int(value), row["id"]))
            if column == "disabled" and value:
                sessions.end_for_user(tx, row["id"])
            uid = f"user-{row['id']}"
            tx.audit(action, user=uid, login=row["login"], **{column: value})
            tx.event(event, user=uid, login=row["login"])
            return user_from_row(user_row(tx, uid))

    def disable(self, ref: str, *, actor: str, node: str | None = None) -> User:
        """Lock the account out: no login, no SSH, no access. Keys are kept for enable."""
        return self._set_flag(ref, "disabled", True, actor, node, "user.disable", "user.disabled")

    def enable(self, ref: str, *, actor: str, node: str | None = None) -> User:
        """Undo disable."""
        return self._set_flag(ref, "disabled", False, actor, node, "user.enable", "user.enabled")

    def set_admin(self, ref: str, is_admin: bool, *, actor: str, node: str | None = None) -> User:
        """Make the user a site admin (admin access to every repository) or not."""
        if not isinstance(is_admin, bool):
            raise BadRequest("is_admin must be true or false")
        return self._set_flag(ref, "is_admin", is_admin, actor, node, "user.admin", "user.updated")

    def set_password(
        self, ref: str, password: str | None, *, actor: str, node: str | None = None
    ) -> None:
        """Set a new password, or remove it (None: the account then uses keys only)."""
        passwords = self._core.passwords
        hashed = passwords.hash(check_password(password)) if password is not None else None
        with self._core.write(actor, node) as tx:
            row = user_row(tx, ref)
            tx.run("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, row["id"]))
            sessions.end_for_user(tx, row["id"])  # a copied cookie dies with the old password
            uid = f"user-{row['id']}"
            tx.audit("user.passwd", user=uid, login=row["login"], cleared=password is None)

    def verify_password(self, login: str, password: str) -> User | None:
        """The user when `login` and `password` match an enabled account, else None.

        Unknown logins, disabled accounts and wrong passwords are indistinguishable
        to the caller, and cost about the same time. A hash made with older
        parameters is upgraded on a successful login.
        """
        if not isinstance(password, str) or not isinstance(login, str):
            return None
        passwords = self._core.passwords
        with self._core.read() as q:
            try:
                check_owner_name(login, "login")
                row = q.one(USER_SELECT + " WHERE o.name = ? AND o.kind = 'user'", (login,))
            except BadRequest:
                row = None
        if row is None or len(password) > 1024:
            passwords.burn(password[:1024])
            return None
        encoded = row["password_hash"]
        if not passwords.verify(encoded, password) or row["disabled"]:
            return None
        if passwords.needs_rehash(encoded):
            # Only if the hash is still the one we verified: a concurrent
            # set_password must win.
            self._core.untracked(
                "UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                (passwords.hash(password), row["id"], encoded),
            )
        return user_from_row(row)
