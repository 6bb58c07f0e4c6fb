"""SSH keys: validated public keys, each belonging to exactly one user.

The fingerprint is unique across all users: sshd identifies the user by the key
alone, so one key on two accounts would make the login ambiguous. Lookups by
fingerprint use its unique index, because sshd's AuthorizedKeysCommand asks on
every connection. Keys of disabled users are hidden from the lookups sshd uses.
"""

from __future__ import annotations

from collections.abc import Sequence

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.names import check_text
from applikant.manager.sshkeys import parse_public_key
from applikant.manager.store.core import Part, Query, Row
from applikant.manager.store.paging import LIMIT_MAX, Page, check_limit, cut, decode, every
from applikant.manager.store.rows import actor_is_admin, parse_id, user_row
from applikant.schema.users import SshKey

TITLE_MAX = 128
KEY_SELECT = (
    "SELECT k.id, k.user_id, o.name AS login, k.title, k.key_type, k.bits,"
    " k.fingerprint, k.public_key, k.created_at, k.last_used_at, u.disabled"
    " FROM ssh_keys k JOIN users u ON u.id = k.user_id JOIN owners o ON o.id = k.user_id"
)
FIND_KEY_SQL = KEY_SELECT + " WHERE k.fingerprint = ?"
KEYS_PAGE_SQL = KEY_SELECT + " WHERE k.id > ? ORDER BY k.id LIMIT ?"
KEYS_OF_SQL = KEY_SELECT + " WHERE k.user_id = ? AND k.id > ? ORDER BY k.id LIMIT ?"


def key_from_row(row: Row) -> SshKey:
    return SshKey(
        id=f"key-{row['id']}",
        user=f"user-{row['user_id']}",
        login=row["login"],
        title=row["title"],
        key_type=row["key_type"],
        bits=row["bits"],
        fingerprint=row["fingerprint"],
        public_key=row["public_key"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )


def key_row(q: Query, ref: object) -> Row:
    """A key by id (`key-7`) or fingerprint (`SHA256:...`). Raises NotFound."""
    if not isinstance(ref, str):
        raise BadRequest("a key must be given by id (key-7) or fingerprint (SHA256:...)")
    number = parse_id(ref, "key")
    if number is not None:
        row = q.one(KEY_SELECT + " WHERE k.id = ?", (number,))
    elif ref.startswith("SHA256:"):
        row = q.one(FIND_KEY_SQL, (ref,))
    else:
        raise BadRequest(f"{ref[:80]!r} is neither a key id (key-7) nor a fingerprint (SHA256:...)")
    if row is None:
        raise NotFound(f"no key {ref}")
    return row


def _key_of(q: Query, ref: str, user: str | None) -> Row:
    """The key `ref`; with `user`, only if it is theirs: someone else's key is
    reported as not found, which reveals nothing about it."""
    row = key_row(q, ref)
    if user is not None:
        owner = user_row(q, user)
        if owner["id"] != row["user_id"]:
            raise NotFound(f"{owner['login']} has no key {ref}")
    return row


class Keys(Part):
    """`store.keys`: SSH public keys."""

    def add(
        self,
        user: str,
        key: str,
        *,
        actor: str,
        node: str | None = None,
        title: str | None = None,
    ) -> SshKey:
        """Validate `key` (one OpenSSH public key line) and register it to `user`.

        The title defaults to the key's comment. Raises BadRequest for a key that is
        not acceptable, NotFound for an unknown user, Conflict for a key already
        registered; the other account is named only when the actor is an admin.
        """
        parsed = parse_public_key(key)
        if title is None or title == "":
            title = parsed.comment or f"{parsed.key_type} key"
        check_text(title, "key title", TITLE_MAX)
        with self._core.write(actor, node) as tx:
            owner = user_row(tx, user)
            clash = tx.one(FIND_KEY_SQL, (parsed.fingerprint,))
            if clash is not None:
                if clash["user_id"] == owner["id"]:
                    raise Conflict(
                        f"this key is already registered to {owner['login']} "
                        f"as {clash['title']!r} ({parsed.fingerprint})"
                    )
                if actor_is_admin(tx, actor):
                    raise Conflict(
                        f"the key is already registered to another account: "
                        f"{clash['login']} (user-{clash['user_id']}); remove it there first"
                    )
                raise Conflict(
                    "the key is already registered to another account; "
                    "use a different key, or ask an admin"
                )
            number = tx.insert(
                "INSERT INTO ssh_keys (user_id, title, key_type, bits, fingerprint,"
                " public_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    owner["id"],
                    title,
                    parsed.key_type,
                    parsed.bits,
                    parsed.fingerprint,
                    parsed.line,
                    tx.now,
                ),
            )
            key_id, uid = f"key-{number}", f"user-{owner['id']}"
            tx.audit(
                "key.add",
                user=uid,
                login=owner["login"],
                key=key_id,
                fingerprint=parsed.fingerprint,
                key_type=parsed.key_type,
                bits=parsed.bits,
                title=title,
            )
            tx.event(
                "key.added",
                user=uid,
                login=owner["login"],
                key=key_id,
                fingerprint=parsed.fingerprint,
            )
            return key_from_row(key_row(tx, key_id))

    def of(self, user: str) -> list[SshKey]:
        """The keys of one user, oldest first. Raises NotFound for an unknown user."""
        return list(every(lambda cursor: self.page(limit=LIMIT_MAX, cursor=cursor, user=user)))

    def get(self, ref: str) -> SshKey:
        """A key by id (`key-7`) or fingerprint. Raises NotFound."""
        with self._core.read() as q:
            return key_from_row(key_row(q, ref))

    def remove(
        self, ref: str, *, actor: str, node: str | None = None, user: str | None = None
    ) -> SshKey:
        """Remove a key by id or fingerprint; return what was removed.

        With `user`, the key must belong to that user (self-service removal): a key
        of someone else is reported as not found, which reveals nothing about it.
        """
        with self._core.write(actor, node) as tx:
            row = _key_of(tx, ref, user)
            removed = key_from_row(row)
            tx.run("DELETE FROM ssh_keys WHERE id = ?", (row["id"],))
            tx.audit(
                "key.remove",
                user=removed.user,
                login=removed.login,
                key=removed.id,
                fingerprint=removed.fingerprint,
                title=removed.title,
            )
            tx.event(
                "key.removed",
                user=removed.user,
                login=removed.login,
                key=removed.id,
                fingerprint=removed.fingerprint,
            )
            return removed

    def update(
        self,
        ref: str,
        title: str,
        *,
        actor: str,
        node: str | None = None,
        user: str | None = None,
    ) -> SshKey:
        """Change a key's title; the key keeps its id, material and fingerprint.

        With `user`, the key must belong to that user (self-service): a key of
        someone else is reported as not found. Raises BadRequest for an empty or
        over-long title.
        """
        if not isinstance(title, str) or not title.strip():
            raise BadRequest("a key needs a title")
        title = check_text(title.strip(), "key title", TITLE_MAX)
        with self._core.write(actor, node) as tx:
            row = _key_of(tx, ref, user)
            key_id, uid = f"key-{row['id']}", f"user-{row['user_id']}"
            if title != row["title"]:
                tx.run("UPDATE ssh_keys SET title = ? WHERE id = ?", (title, row["id"]))
                tx.audit(
                    "key.update",
                    user=uid,
                    login=row["login"],
                    key=key_id,
                    fingerprint=row["fingerprint"],
                    title=title,
                    old_title=row["title"],
                )
                tx.event(
                    "key.updated",
                    user=uid,
                    login=row["login"],
                    key=key_id,
                    fingerprint=row["fingerprint"],
                )
            return key_from_row(key_row(tx, key_id))

    def find(self, fingerprint: str, *, include_disabled: bool = False) -> SshKey | None:
        """The key with this fingerprint, or None; an indexed lookup, for sshd's
        AuthorizedKeysCommand. Keys of disabled users are None unless asked for."""
        if not isinstance(fingerprint, str):
            raise BadRequest("fingerprint must be a string")
        with self._core.read() as q:
            row = q.one(FIND_KEY_SQL, (fingerprint,))
        if row is None or (row["disabled"] and not include_disabled):
            return None
        return key_from_row(row)

    def touch(self, fingerprint: str) -> None:
        """Record that the key was just used to log in. Not audited: it is no change."""
        self._core.untracked(
            "UPDATE ssh_keys SET last_used_at = ? WHERE fingerprint = ?",
            (self._core.now(), fingerprint),
        )

    def touch_many(self, fingerprints: Sequence[str]) -> None:
        """Record that these keys were just used, in one statement (af batches
        the keys it let in). Unknown fingerprints are ignored. Not audited."""
        wanted = [fp for fp in fingerprints if isinstance(fp, str)][:1000]
        if wanted:
            marks = ", ".join("?" for _ in wanted)
            self._core.untracked(
                f"UPDATE ssh_keys SET last_used_at = ? WHERE fingerprint IN ({marks})",
                (self._core.now(), *wanted),
            )

    def page(
        self,
        *,
        limit: int = 100,
        cursor: str | None = None,
        user: str | None = None,
        include_disabled: bool = False,
    ) -> Page[SshKey]:
        """One page of keys by id: one user's (all of theirs), or every enabled
        user's (for rebuilding authorized_keys; `include_disabled` adds the rest)."""
        check_limit(limit)
        key = decode("keys", cursor, int)
        after = key[0] if key else 0
        with self._core.read() as q:
            if user is not None:
                owner = user_row(q, user)
                rows = q.all(KEYS_OF_SQL, (owner["id"], after, limit + 1))
            else:
                sql = KEYS_PAGE_SQL
                if not include_disabled:
                    sql = sql.replace(" ORDER BY", " AND u.disabled = 0 ORDER BY")
                rows = q.all(sql, (after, limit + 1))
        return cut(
            [key_from_row(row) for row in rows],
            limit,
            "keys",
            lambda k: (int(k.id[4:]),),
            key is None,
        )

    def all(self, *, include_disabled: bool = False) -> list[SshKey]:
        """Every key of every enabled user (for rebuilding authorized_keys), by id."""
        return list(
            every(
                lambda cursor: self.page(
                    limit=LIMIT_MAX, cursor=cursor, include_disabled=include_disabled
                )
            )
        )
