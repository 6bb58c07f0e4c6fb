"""The store's foundation: one connection, one lock, one transaction per change.

Every mutating store method runs inside `_write()`, which takes the lock, begins
an IMMEDIATE transaction (so the checks it makes still hold when it writes),
lets the method validate, change, and append its audit entry, then commits. Any
exception rolls everything back: the change and its audit entry land together or
not at all. Change events are delivered to `on_change` only after the commit.

The lock makes the store safe for one caller at a time from any thread (the trio
service calls it from worker threads). It is re-entrant so that an `on_change`
callback may read from the store; events are delivered while it is held, which
keeps their order the order of the commits.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.names import check_name, check_text, parse_repo_path
from applikant.manager.passwords import Passwords
from applikant.manager.schema import MIGRATIONS, Migration, connect, migrate

log = logging.getLogger(__name__)

SYSTEM = "system"
"""The actor of changes made by am itself or by its local admin command line."""

Event = dict[str, Any]
_ID_RE = re.compile(r"(user|group|key|repo|token)-([1-9][0-9]{0,17})\Z")


def format_time(moment: datetime) -> str:
    """The one text form of times in the database: fixed-width UTC, so it sorts."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_time(text: str) -> str:
    """A stored time (format_time) as the models' JSON gives it: what
    `model.model_dump(mode="json")` makes of the datetime, without building one.
    pydantic leaves out a zero fraction (`...:56Z`) and keeps any other whole."""
    if len(text) == 27 and text.endswith(".000000Z"):
        return text[:19] + "Z"
    return text


def parse_id(ref: str, kind: str) -> int | None:
    """The number in a stable id such as `user-42`, or None when `ref` is not one."""
    match = _ID_RE.match(ref)
    if match is None or match.group(1) != kind:
        return None
    return int(match.group(2))


class Tx:
    """What a mutating method may do inside its transaction besides plain SQL."""

    def __init__(self, conn: sqlite3.Connection, actor: str, node: str | None, now: str) -> None:
        self.conn = conn
        self.actor = actor
        self.node = node
        self.now = now
        self.events: list[Event] = []

    def audit(self, action: str, repo: str | None = None, /, **details: Any) -> int:
        """Append an audit entry in this transaction; return its id."""
        cur = self.conn.execute(
            "INSERT INTO audit_log (time, actor, node, action, repo, details)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                self.now,
                self.actor,
                self.node,
                action,
                repo,
                json.dumps(details, sort_keys=True, separators=(",", ":")),
            ),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def event(self, kind: str, **fields: Any) -> None:
        """Queue a change event, delivered to on_change once the commit succeeded."""
        self.events.append({"kind": kind, **fields})


class StoreBase:
    """Connection, lock, transactions, and the lookups every part of the store shares."""

    def __init__(
        self,
        path: str,
        *,
        on_change: Callable[[Event], None] | None = None,
        passwords: Passwords | None = None,
        clock: Callable[[], datetime] | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
        read_only: bool = False,
    ) -> None:
        self.path = str(path)
        self._on_change = on_change
        self._passwords = passwords if passwords is not None else Passwords()
        self._clock = clock if clock is not None else (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._conn = connect(self.path)
        self._conn.row_factory = sqlite3.Row
        try:
            self.schema_version = migrate(self._conn, migrations)
            if read_only:
                # A second connection for lookups beside the writer (WAL): it
                # can never write, so it never waits for the writer's lock.
                self._conn.execute("PRAGMA query_only = ON")
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        """Close the connection; everything committed is already on disk."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> StoreBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> str:
        return format_time(self._clock())

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._conn

    @contextmanager
    def _write(self, actor: str, node: str | None) -> Iterator[Tx]:
        check_text(actor, "actor", 128)
        if not actor:
            raise BadRequest("actor must not be empty")
        if node is not None:
            check_text(node, "node", 255)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            tx = Tx(self._conn, actor, node, self._now())
            try:
                yield tx
                self._conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._rollback()
                # The methods check for clashes first; this is the backstop.
                raise Conflict(f"the change conflicts with stored data ({exc})") from exc
            except BaseException:
                self._rollback()
                raise
            for event in tx.events:
                self._notify(event)

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _notify(self, event: Event) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(event)
        except Exception:
            # The change is committed; a failing listener must not make it look failed.
            log.exception("on_change listener failed for %s", event.get("kind"))

    # Lookups shared by the parts of the store. Each raises NotFound with a message
    # naming what was asked for, and runs inside the caller's lock.

    def _user_row(self, conn: sqlite3.Connection, ref: object) -> sqlite3.Row:
        if not isinstance(ref, str):
            raise BadRequest("a user must be given by login or id (user-42)")
        number = parse_id(ref, "user")
        if number is not None:
            row = conn.execute(USER_SELECT + " WHERE u.id = ?", (number,)).fetchone()
            if row is None:
                raise NotFound(f"no user {ref}")
            return row
        check_name(ref, "login")
        row = conn.execute(USER_SELECT + " WHERE o.name = ? AND o.kind = 'user'", (ref,)).fetchone()
        if row is None:
            raise NotFound(f"no user named {ref!r}")
        return row

    def _owner_row(self, conn: sqlite3.Connection, name: str) -> sqlite3.Row | None:
        return conn.execute("SELECT id, name, kind FROM owners WHERE name = ?", (name,)).fetchone()

    def _grantee_row(self, conn: sqlite3.Connection, ref: object) -> sqlite3.Row:
        """A user (login or id) or a group (name or id): they share one namespace."""
        if isinstance(ref, str):
            number = parse_id(ref, "user") or parse_id(ref, "group")
            if number is not None:
                row = conn.execute(
                    "SELECT id, name, kind FROM owners WHERE id = ? AND kind = ?",
                    (number, ref.split("-", 1)[0]),
                ).fetchone()
                if row is None:
                    raise NotFound(f"no {ref.split('-', 1)[0]} {ref}")
                return row
        name = check_name(ref, "user or group name")
        row = self._owner_row(conn, name)
        if row is None:
            raise NotFound(f"no user or group named {name!r}")
        return row

    def _repo_row(self, conn: sqlite3.Connection, path: object) -> sqlite3.Row:
        owner, name = parse_repo_path(path)
        row = conn.execute(
            REPO_SELECT + " WHERE o.name = ? AND r.name = ?", (owner, name)
        ).fetchone()
        if row is None:
            raise NotFound(f"no repository {owner}/{name}")
        return row

    def _actor_is_admin(self, conn: sqlite3.Connection, actor: str) -> bool:
        """True for am itself and for enabled site admins: they may see who owns what."""
        if actor == SYSTEM:
            return True
        number = parse_id(actor, "user")
        if number is None:
            return False
        row = conn.execute(
            "SELECT is_admin, disabled FROM users WHERE id = ?", (number,)
        ).fetchone()
        return row is not None and bool(row["is_admin"]) and not row["disabled"]

    def is_site_admin(self, actor: str) -> bool:
        """True when `actor` is `system` or an enabled site admin (`user-42`).

        The store records who made each change but does not refuse changes by
        actor: the service layer decides who may call what, using this and
        check_access(..., "admin").
        """
        with self._read() as conn:
            return self._actor_is_admin(conn, actor)


USER_SELECT = (
    "SELECT u.id, o.name AS login, u.display_name, u.email, u.password_hash,"
    " u.is_admin, u.disabled, u.created_at FROM users u JOIN owners o ON o.id = u.id"
)
REPO_SELECT = (
    "SELECT r.id, r.owner_id, o.name AS owner, o.kind AS owner_kind, r.name,"
    " r.description, r.is_public, r.default_branch, r.created_at"
    " FROM owners o JOIN repos r ON r.owner_id = o.id"
)
