"""The store's core: one connection, one lock, one transaction per change.

The parts of the store (users, keys, repos...) are small classes over one
`Core`. A part reads with `core.read()` and changes things inside
`core.write(actor, node)`, which takes the lock, begins a transaction that
holds the database's write lock (so the checks a part makes still hold when it
writes), lets the part validate, change, and append its audit entry
(`tx.audit`), runs the before-commit hooks (webhook deliveries are made
there, with the change they report), then commits. Any exception rolls
everything back: the change, its audit entry and its deliveries land together
or not at all. Change events (`tx.event`) reach `on_change` only after the
commit, in commit order.

A write inside a write joins it: one operation may call several parts, and all
of it commits once (`Store.transaction`). The inner write runs under a
savepoint, so when it fails and the outer code carries on, the inner change
and its events are undone and the rest stands.

The lock makes the store safe for one caller at a time from any thread (am
calls it from worker threads). It is re-entrant, so that an `on_change`
callback may read from the store; events are delivered while it is held,
which keeps their order the order of the commits.

What differs between databases is the `Backend`'s business (backend.py):
parts write standard SQL with `?` placeholders and ask the core to run it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Protocol, cast

from applikant.manager.errors import BadRequest, Conflict
from applikant.manager.names import check_text
from applikant.manager.passwords import Passwords
from applikant.manager.store.backend import Backend, Connection
from applikant.manager.store.engines import backend_for
from applikant.schema.base import SYSTEM

__all__ = ["SYSTEM", "Core", "Event", "Part", "Query", "Row", "Tx", "format_time"]

log = logging.getLogger(__name__)

Event = dict[str, Any]
Params = Sequence[Any]


class Row(Protocol):
    """A result row: by column name or position (sqlite3.Row is one)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def keys(self) -> list[str]: ...
    def __iter__(self) -> Iterator[Any]: ...


def format_time(moment: datetime) -> str:
    """The one text form of times in the database: fixed-width UTC, so it sorts."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Query:
    """SQL on the store's connection: what a part reads (and a Tx writes) with.

    Statements are standard SQL with `?` placeholders; the backend turns them
    into its driver's dialect.
    """

    __slots__ = ("_conn", "_prepare", "merges_ranges")

    def __init__(self, conn: Connection, backend: Backend) -> None:
        self._conn = conn
        self._prepare = backend.prepare
        self.merges_ranges = backend.merges_ranges  # see Backend

    def one(self, sql: str, params: Params = ()) -> Row | None:
        return cast("Row | None", self._conn.execute(self._prepare(sql), params).fetchone())

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return cast("list[Row]", self._conn.execute(self._prepare(sql), params).fetchall())

    def scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row (None when there is no row)."""
        row = self._conn.execute(self._prepare(sql), params).fetchone()
        return None if row is None else row[0]


class Tx(Query):
    """What a change may do inside its transaction: SQL, audit entries, events."""

    __slots__ = ("_backend", "actor", "events", "node", "now")

    def __init__(
        self,
        conn: Connection,
        backend: Backend,
        actor: str,
        node: str | None,
        now: str,
        events: list[Event] | None = None,
    ) -> None:
        super().__init__(conn, backend)
        self._backend = backend
        self.actor = actor
        self.node = node
        self.now = now
        self.events: list[Event] = [] if events is None else events

    def run(self, sql: str, params: Params = ()) -> int:
        """Run a statement; the number of rows it changed."""
        return int(self._conn.execute(self._prepare(sql), params).rowcount)

    def many(self, sql: str, rows: Iterable[Params]) -> None:
        self._conn.executemany(self._prepare(sql), rows)

    def upsert(
        self, table: str, keys: Sequence[str], row: Mapping[str, Any], update: Sequence[str]
    ) -> None:
        """Insert `row` into `table`; when a row with the same `keys` exists, set
        its `update` columns from `row` instead."""
        sql = self._backend.upsert(table, tuple(keys), tuple(row), tuple(update))
        self._conn.execute(self._prepare(sql), tuple(row.values()))

    def ids_given(self, *tables: str) -> None:
        """After inserting rows with ids of the caller's choice (a bulk load):
        the ids the database assigns in `tables` from now on come after them."""
        for table in tables:
            self._backend.ids_given(self._conn, table)

    def insert(self, sql: str, params: Params = ()) -> int:
        """Run an INSERT into a table with an integer `id`; the new row's id."""
        return self._backend.insert(self._conn, self._prepare(sql), params)

    def audit(self, action: str, repo: str | None = None, /, **details: Any) -> int:
        """Append an audit entry in this transaction; return its id."""
        return self.audit_entry(action, repo, details)

    def audit_entry(
        self, action: str, repo: str | None, details: dict[str, Any], event_id: str | None = None
    ) -> int:
        """The one INSERT into the append-only audit log (see audit.py); its id."""
        return self.insert(
            "INSERT INTO audit_log (time, actor, node, action, repo, details, event_id, lease)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self.now,
                self.actor,
                self.node,
                action,
                repo,
                json.dumps(details, sort_keys=True, separators=(",", ":")),
                event_id,
                self._backend.lease,
            ),
        )

    def event(self, kind: str, **fields: Any) -> None:
        """Queue a change event, delivered to on_change once the commit succeeded."""
        self.events.append({"kind": kind, **fields})

    def joined(self, actor: str, node: str | None) -> Tx:
        """A write nested in this one: same transaction and events, its own actor."""
        return Tx(self._conn, self._backend, actor, node, self.now, self.events)


class Core:
    """Connection, lock, transactions, before-commit hooks and change events;
    see the module docstring. `backend` defaults to the one `path` names
    (engines.backend_for: PostgreSQL for a URL, SQLite for a file)."""

    def __init__(
        self,
        path: str,
        *,
        backend: Backend | None = None,
        on_change: Callable[[Event], None] | None = None,
        passwords: Passwords | None = None,
        clock: Callable[[], datetime] | None = None,
        migrations: Sequence[Any] | None = None,
        read_only: bool = False,
    ) -> None:
        if backend is None:
            backend = backend_for(str(path))
        self.backend = backend
        self.path = str(path)
        self.passwords = passwords if passwords is not None else Passwords()
        self.clock: Callable[[], datetime] = (
            clock if clock is not None else (lambda: datetime.now(UTC))
        )
        self.lock = threading.RLock()
        self.connection, self.schema_version = backend.open(self.path, migrations, read_only)
        self._query = Query(self.connection, backend)
        self._tx: Tx | None = None
        self._depth = 0
        self._on_change = on_change
        self._before_commit: list[Callable[[Tx], None]] = []

    def close(self) -> None:
        """Close the connection; everything committed is already on disk."""
        with self.lock:
            self.connection.close()

    def now(self) -> str:
        return format_time(self.clock())

    def before_commit(self, hook: Callable[[Tx], None]) -> None:
        """Run `hook(tx)` at the end of every transaction, inside it: what it
        writes commits with the change, and its failure rolls the change back."""
        self._before_commit.append(hook)

    @contextmanager
    def read(self) -> Iterator[Query]:
        """Lookups under the lock (they see what the current transaction wrote)."""
        with self.lock:
            yield self._query

    @contextmanager
    def write(self, actor: str, node: str | None = None) -> Iterator[Tx]:
        """One change, audited as `actor` from `node`; joins a write in progress."""
        check_text(actor, "actor", 128)
        if not actor:
            raise BadRequest("actor must not be empty")
        if node is not None:
            check_text(node, "node", 255)
        with self.lock:
            if self._tx is None:
                yield from self._transaction(actor, node)
            else:
                yield from self._savepoint(self._tx, actor, node)

    def untracked(self, sql: str, params: Params = ()) -> None:
        """One statement that is no change to audit (the time a key was last
        used): committed on its own (under the write lock, fenced like any
        write), or with the transaction in progress."""
        with self.lock:
            conn = self.connection
            if self._tx is not None:
                conn.execute(self.backend.prepare(sql), params)
                return
            self.backend.begin_write(conn)
            try:
                conn.execute(self.backend.prepare(sql), params)
                conn.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def _transaction(self, actor: str, node: str | None) -> Iterator[Tx]:
        conn = self.connection
        self.backend.begin_write(conn)
        tx = Tx(conn, self.backend, actor, node, self.now())
        self._tx = tx
        try:
            yield tx
            for hook in self._before_commit:
                hook(tx)
            conn.execute("COMMIT")
        except self.backend.integrity_errors as exc:
            self._rollback()
            # The parts check for clashes first; this is the backstop.
            raise Conflict(f"the change conflicts with stored data ({exc})") from exc
        except BaseException:
            self._rollback()
            raise
        finally:
            self._tx = None
        for event in tx.events:
            self._notify(event)

    def _savepoint(self, outer: Tx, actor: str, node: str | None) -> Iterator[Tx]:
        conn = self.connection
        self._depth += 1
        name = f"part_{self._depth}"
        conn.execute(f"SAVEPOINT {name}")
        mark = len(outer.events)
        try:
            yield outer.joined(actor, node)
            conn.execute(f"RELEASE SAVEPOINT {name}")
        except BaseException as exc:
            conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
            conn.execute(f"RELEASE SAVEPOINT {name}")
            del outer.events[mark:]
            if isinstance(exc, self.backend.integrity_errors):
                raise Conflict(f"the change conflicts with stored data ({exc})") from exc
            raise
        finally:
            self._depth -= 1

    def _rollback(self) -> None:
        if self.backend.in_transaction(self.connection):
            self.connection.execute("ROLLBACK")

    def _notify(self, event: Event) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(event)
        except Exception:
            # The change is committed; a failing listener must not make it look failed.
            log.exception("on_change listener failed for %s", event.get("kind"))


class Part:
    """A piece of the store (users, keys, repos...) over the shared core."""

    def __init__(self, core: Core) -> None:
        self._core = core
