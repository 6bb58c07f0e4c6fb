"""Web sessions: what a browser's cookie stands for, kept here so every aw agrees.

A session's secret (32 random bytes, URL-safe) is made here, handed out once
(the cookie's value) and never stored: the table keeps its SHA-256 and a
session is found by that hash through its unique index, like an API token.

A session ends:
- when its user logs out or ends it from the list of their sessions (`end`),
  or ends all the others ("log out everywhere", `end_all`);
- with every other session of its user when the password changes or the
  account is disabled (`end_for_user`, called by users.py in the same
  transaction as the change, so no moment exists in which both hold);
- by itself, `idle_timeout` seconds after it was last seen, or at `expires_at`
  (fixed at the login). An ended or expired session is simply not found.

Starting and ending sessions are audited (`session.start`, `session.end`,
`session.end_all`); being seen only records `last_seen_at` and the address, at
most once a minute per session, like a token's use. Expired rows are removed
when sessions are started (at most a batch at a time).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from applikant.manager.errors import BadRequest, NotFound
from applikant.manager.store import users as users_part  # (users.py imports this module)
from applikant.manager.store.core import Part, Query, Row, Tx, format_time
from applikant.manager.store.rows import USER_SELECT, parse_id, user_row
from applikant.manager.store.tokens import token_hash
from applikant.schema.sessions import USER_AGENT_MAX, NewSession, Session
from applikant.schema.users import User

__all__ = ["SESSIONS_PER_USER_MAX", "Sessions", "end_for_user", "session_hash"]

SESSIONS_PER_USER_MAX = 100  # the oldest end when a user starts more
SECRET_BYTES = 32
SECRET_MAX = 512
TOUCH_EVERY = timedelta(seconds=60)
PURGE_BATCH = 500

SESSION_SELECT = (
    "SELECT id, user_id, created_at, last_seen_at, authenticated_at, expires_at,"
    " idle_timeout, address, user_agent FROM sessions"
)


#: The hex SHA-256 of a session's secret: what the table keeps (as for tokens).
session_hash = token_hash


def session_from_row(row: Row) -> Session:
    return Session(
        id=f"session-{row['id']}",
        user=f"user-{row['user_id']}",
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        authenticated_at=row["authenticated_at"],
        expires_at=row["expires_at"],
        idle_timeout=row["idle_timeout"],
        address=row["address"],
        user_agent=row["user_agent"],
    )


def _number(ref: object) -> int:
    number = parse_id(ref, "session") if isinstance(ref, str) else None
    if number is None:
        raise BadRequest(f"{str(ref)[:80]!r} is not a session id (session-7)")
    return number


def _live(row: Row, now: datetime) -> bool:
    """Whether the session has neither expired nor been idle too long at `now`."""
    if format_time(now) >= row["expires_at"]:
        return False
    last = datetime.fromisoformat(row["last_seen_at"])
    return now - last < timedelta(seconds=row["idle_timeout"])


def end_for_user(tx: Tx, user_id: int, keep: int | None = None) -> int:
    """End every session of the user (but `keep`) in the transaction `tx`;
    how many ended. For the changes that must log a user out everywhere."""
    if keep is None:
        return tx.run("DELETE FROM sessions WHERE user_id = ?", (user_id,))
    return tx.run("DELETE FROM sessions WHERE user_id = ? AND id <> ?", (user_id, keep))


class Sessions(Part):
    """`store.sessions`: web sessions."""

    def start(
        self,
        user: str,
        *,
        actor: str,
        node: str | None = None,
        address: str = "",
        user_agent: str = "",
        idle: int,
        max_age: int,
    ) -> NewSession:
        """A new session for the enabled `user`; the answer is the only place
        its secret appears. Raises NotFound for an unknown user, BadRequest for
        a disabled one or lifetimes that are not positive."""
        if idle <= 0 or max_age <= 0:
            raise BadRequest("a session's idle timeout and lifetime must be positive")
        with self._core.write(actor, node) as tx:
            owner = user_row(tx, user)
            if owner["disabled"]:
                raise BadRequest(f"account {owner['login']} is disabled")
            self._purge(tx, owner["id"])
            secret = secrets.token_urlsafe(SECRET_BYTES)
            expires = format_time(datetime.fromisoformat(tx.now) + timedelta(seconds=max_age))
            number = tx.insert(
                "INSERT INTO sessions (user_id, token_hash, created_at, last_seen_at,"
                " authenticated_at, expires_at, idle_timeout, address, user_agent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    owner["id"],
                    session_hash(secret),
                    tx.now,
                    tx.now,
                    tx.now,
                    expires,
                    idle,
                    address[:64],
                    user_agent[:USER_AGENT_MAX],
                ),
            )
            uid = f"user-{owner['id']}"
            tx.audit("session.start", user=uid, login=owner["login"], session=f"session-{number}")
            made = session_from_row(self._row(tx, number))
            return NewSession(**made.model_dump(), secret=secret)

    def _purge(self, tx: Tx, user_id: int) -> None:
        """Remove expired sessions (a batch) and the user's oldest beyond the cap."""
        tx.run(
            "DELETE FROM sessions WHERE id IN"
            " (SELECT id FROM sessions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)",
            (tx.now, PURGE_BATCH),
        )
        tx.run(
            "DELETE FROM sessions WHERE user_id = ? AND id NOT IN"
            " (SELECT id FROM sessions WHERE user_id = ? ORDER BY id DESC LIMIT ?)",
            (user_id, user_id, SESSIONS_PER_USER_MAX - 1),
        )

    def _row(self, q: Query, number: int) -> Row:
        row = q.one(SESSION_SELECT + " WHERE id = ?", (number,))
        if row is None:
            raise NotFound(f"no session session-{number}")
        return row

    def find(self, secret: object) -> tuple[Session, User] | None:
        """The live session and its enabled user for a cookie's secret, or None
        (unknown, ended, expired, idle too long, account disabled). Writes nothing."""
        if not isinstance(secret, str) or not 0 < len(secret) <= SECRET_MAX:
            return None
        with self._core.read() as q:
            row = q.one(SESSION_SELECT + " WHERE token_hash = ?", (session_hash(secret),))
            if row is None or not _live(row, self._core.clock()):
                return None
            user = q.one(USER_SELECT + " WHERE u.id = ?", (row["user_id"],))
        if user is None or user["disabled"]:
            return None
        return session_from_row(row), users_part.user_from_row(user)

    def get(self, ref: str) -> Session:
        """A session by id, live or not yet purged. Raises NotFound."""
        with self._core.read() as q:
            return session_from_row(self._row(q, _number(ref)))

    def of(self, user: str) -> list[Session]:
        """The live sessions of one user, newest first. Raises NotFound."""
        now = self._core.clock()
        with self._core.read() as q:
            owner = user_row(q, user)
            rows = q.all(SESSION_SELECT + " WHERE user_id = ? ORDER BY id DESC", (owner["id"],))
        return [session_from_row(row) for row in rows if _live(row, now)]

    def touch_due(self, session: Session, address: str) -> bool:
        """True when the session's last_seen_at is older than TOUCH_EVERY or its
        address changed."""
        return session.address != address[:64] or (
            self._core.clock() - session.last_seen_at >= TOUCH_EVERY
        )

    def touch(self, ref: str, address: str) -> None:
        """Record that the session was just seen, from `address`. Not audited."""
        self._core.untracked(
            "UPDATE sessions SET last_seen_at = ?, address = ? WHERE id = ?",
            (self._core.now(), address[:64], _number(ref)),
        )

    def confirm(self, ref: str) -> Session:
        """Record that the user just proved their password in this session."""
        number = _number(ref)
        self._core.untracked(
            "UPDATE sessions SET authenticated_at = ? WHERE id = ?", (self._core.now(), number)
        )
        with self._core.read() as q:
            return session_from_row(self._row(q, number))

    def end(
        self, ref: str, *, actor: str, node: str | None = None, user: str | None = None
    ) -> Session:
        """End the session `session-7` at once; what was ended. With `user`, it
        must be that user's: someone else's is reported as not found."""
        number = _number(ref)
        with self._core.write(actor, node) as tx:
            row = self._row(tx, number)
            owner = user_row(tx, f"user-{row['user_id']}" if user is None else user)
            if owner["id"] != row["user_id"]:
                raise NotFound(f"{owner['login']} has no session {ref}")
            ended = session_from_row(row)
            tx.run("DELETE FROM sessions WHERE id = ?", (number,))
            tx.audit("session.end", user=ended.user, login=owner["login"], session=ended.id)
            return ended

    def end_all(
        self, user: str, *, actor: str, node: str | None = None, keep: str | None = None
    ) -> int:
        """End every session of `user` but `keep` (the caller's own, or None
        for all); how many ended."""
        keep_number = None if keep is None else _number(keep)
        with self._core.write(actor, node) as tx:
            owner = user_row(tx, user)
            ended = end_for_user(tx, owner["id"], keep_number)
            tx.audit(
                "session.end_all",
                user=f"user-{owner['id']}",
                login=owner["login"],
                ended=ended,
                kept=keep,
            )
            return ended
