"""The SQLite backend: how a connection is opened and migrated, and the few
things only SQLite spells its own way (backend.py). The schema and its history
are schema.py's, shared with PostgreSQL.

The version lives in `PRAGMA user_version`. Each migration runs in its own
IMMEDIATE transaction together with the version bump, so a crash leaves the
database at a whole version.
"""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Sequence
from typing import Any

from applikant.manager.store.backend import Backend, Connection
from applikant.manager.store.schema import MIGRATIONS, Migration, Step, reached

__all__ = ["MIGRATIONS", "SqliteBackend", "connect", "migrate", "schema_version"]


#: The database and the files SQLite keeps beside it: the service user's only.
PRIVATE_SUFFIXES = ("", "-wal", "-shm", "-journal")


def make_private(path: str) -> None:
    """Create the database file 0600 if it is missing, and take every group and
    other permission from it and its -wal, -shm and -journal files: they hold
    password and token hashes and webhook secrets. SQLite gives the -wal and
    -shm it creates the mode of the database file, so they stay 0600 too,
    whatever the process's umask. Files this process may not change (another
    user's, read by root's doctor) are left alone."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError:
        return  # a read-only place: sqlite3 says what is wrong
    for suffix in PRIVATE_SUFFIXES:
        try:
            mode = stat.S_IMODE(os.stat(path + suffix).st_mode)
            if mode & 0o077:
                os.chmod(path + suffix, mode & 0o700)
        except OSError:
            pass


def connect(path: str) -> sqlite3.Connection:
    """Open `path` in autocommit mode with the pragmas durability depends on.

    WAL lets readers run beside the writer; synchronous=FULL makes every commit
    reach the disk before it returns, so an acknowledged change survives SIGKILL
    and power loss. Transactions are begun explicitly by the store. A large page
    cache and memory-mapped reads keep lookups flat as the store grows (with
    100,000 users the B-trees no longer fit SQLite's default 2 MiB cache).
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA mmap_size = 268435456")
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    """The version the database is at (0 for a new, empty file)."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    return int(version)


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database up to `len(migrations)`; return the version reached.

    Raises SchemaTooNew when the file is newer than this code knows, rather than
    guessing at a schema it has never seen. The version is re-read inside each
    transaction, so two processes opening the same new file do not both migrate.
    """
    target = len(migrations)
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = schema_version(conn)
            if reached(version, target):
                conn.execute("COMMIT")
                return version
            step = migrations[version]
            if isinstance(step, Step):
                for script in (step.sql, step.sqlite):
                    for statement in _statements(script):
                        conn.execute(statement)
            elif callable(step):
                step(conn)
            else:
                for statement in _statements(step):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a script into statements (executescript would commit on its own)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                statements.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement in migration: {current.strip()[:60]!r}")
    return statements


class SqliteBackend(Backend):
    """SQLite through the standard library: the embedded default."""

    name = "sqlite"
    integrity_errors = (sqlite3.IntegrityError,)
    merges_ranges = True

    def open(
        self, path: str, migrations: Sequence[Any] | None, read_only: bool
    ) -> tuple[Connection, int]:
        make_private(path)
        conn = connect(path)
        conn.row_factory = sqlite3.Row
        try:
            version = migrate(conn, MIGRATIONS if migrations is None else migrations)
            if read_only:
                # A second connection for lookups beside the writer (WAL): it
                # can never write, so it never waits for the writer's lock.
                conn.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return conn, version

    def version_of(self, path: str) -> int | None:
        if not os.path.exists(path):
            return None
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return schema_version(conn)
        finally:
            conn.close()

    def prepare(self, sql: str) -> str:
        return sql

    def begin_write(self, conn: Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def insert(self, conn: Connection, sql: str, params: Sequence[Any]) -> int:
        row_id = conn.execute(sql, params).lastrowid
        assert row_id is not None
        return int(row_id)

    def in_transaction(self, conn: Connection) -> bool:
        return bool(getattr(conn, "in_transaction", False))
