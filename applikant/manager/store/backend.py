"""What differs between databases, behind one small interface.

The parts of the store write standard SQL with `?` placeholders, and run it
through the core (`Query`, `Tx`), never on the connection itself. What a second
database (PostgreSQL, for clusters that outgrow one host) has to supply is
only this:

- `open`: connect (autocommit: the core begins transactions itself), bring
  the schema up to date with the backend's own migrations, and return the
  connection with the schema version reached; `read_only` makes a connection
  that can never write;
- `prepare`: the statement in the driver's placeholder style (`?` for
  sqlite3, `%s` for psycopg);
- `begin_write`: begin a transaction that holds the write lock from its first
  statement, so that what a part checked still holds when it writes (SQLite:
  `BEGIN IMMEDIATE`; PostgreSQL: `BEGIN` and a transaction-level advisory
  lock);
- `insert`: run an INSERT and return the new row's id (sqlite3's `lastrowid`;
  `RETURNING id` elsewhere);
- `upsert`: the statement that inserts a row or, when its key exists, updates
  it (by default `INSERT ... ON CONFLICT (...) DO UPDATE SET c = excluded.c`,
  which SQLite and PostgreSQL share);
- `integrity_errors`: the driver's exceptions for a violated constraint (the
  core answers them with Conflict);
- `in_transaction`: whether a transaction is open on the connection;
- `version_of`: the schema version of an existing database, without
  migrating it (None when there is none yet);
- `unavailable_errors`: the driver's exceptions for a database that cannot be
  reached, or that this am may no longer write to (the services answer them
  as "unavailable", which callers treat like an am that is away);
- `lease`: the epoch of the lease the store's am holds, checked by every
  write transaction (None: not fenced; SQLite has one am and no lease);
- `ids_given`: after rows were inserted with ids the caller chose (a bulk
  load), make the ids the database assigns continue after them (SQLite takes
  the largest id plus one anyway; PostgreSQL moves the identity's sequence).

And one fact about its planner: `merges_ranges`, whether a `UNION` ordered and
limited merges its index ranges in order and stops at the limit (SQLite's
MERGE (UNION)), so that the ranges need no limit of their own; PostgreSQL 15
gathers every row of every range first (each range is then given a limit).

The schema and its history are schema.py's, one for every backend.

`SAVEPOINT`, `RELEASE SAVEPOINT`, `ROLLBACK TO SAVEPOINT`, `COMMIT` and
`ROLLBACK` are standard and used as they are.

Rows must answer by column name and by position (sqlite3.Row does).
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The part of a DB-API connection the store uses (sqlite3's, psycopg's)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any: ...
    def close(self) -> None: ...


class Backend(ABC):
    """One database engine; see the module docstring."""

    #: "sqlite" or "postgresql": what `[am] db` chose (backend_for).
    name = ""
    #: The driver's exceptions for a violated constraint.
    integrity_errors: tuple[type[Exception], ...] = ()
    #: The driver's exceptions for a database out of reach (or a lost lease).
    unavailable_errors: tuple[type[Exception], ...] = ()
    #: The lease epoch write transactions check (None: no fencing).
    lease: int | None = None
    #: Whether an ordered, limited UNION reads its index ranges lazily, in order.
    merges_ranges = False

    @abstractmethod
    def open(
        self, path: str, migrations: Sequence[Any] | None, read_only: bool
    ) -> tuple[Connection, int]:
        """A migrated connection to `path` and the schema version it is at."""

    @abstractmethod
    def version_of(self, path: str) -> int | None:
        """The schema version of the database at `path` as it is (None: none yet)."""

    @abstractmethod
    def prepare(self, sql: str) -> str:
        """`sql` (with `?` placeholders) as the driver wants it."""

    @abstractmethod
    def begin_write(self, conn: Connection) -> None:
        """Begin a transaction that holds the write lock from the start."""

    @abstractmethod
    def insert(self, conn: Connection, sql: str, params: Sequence[Any]) -> int:
        """Run the prepared INSERT `sql`; the id of the row it made."""

    @abstractmethod
    def in_transaction(self, conn: Connection) -> bool:
        """Whether a transaction is open on `conn`."""

    def ids_given(self, conn: Connection, table: str) -> None:  # noqa: B027 (SQLite: nothing)
        """Ids assigned from now on in `table` come after the largest there (by
        default nothing to do: the database takes the largest id plus one)."""

    def upsert(
        self, table: str, keys: tuple[str, ...], columns: tuple[str, ...], update: tuple[str, ...]
    ) -> str:
        """INSERT of `columns` into `table` that, when a row with the same `keys`
        exists, sets its `update` columns to the new values instead."""
        return standard_upsert(table, keys, columns, update)


@functools.cache
def standard_upsert(
    table: str, keys: tuple[str, ...], columns: tuple[str, ...], update: tuple[str, ...]
) -> str:
    """The upsert SQLite (3.24+) and PostgreSQL (9.5+) both understand."""
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in update)
    )
