"""The lease that makes exactly one am active when several share a PostgreSQL store.

The choice: a session-level advisory lock on a dedicated connection, and a row
per lease taken in `am_leases` (store/postgres.py makes the table).

- Holding the lease is holding the lock `(LOCK_CLASS, LEASE_LOCK)` on this
  connection. The server releases it the moment the session ends: when the am
  dies (its socket closes), and when it goes silent, because the session has
  `idle_session_timeout` = `timeout` and the active am touches it every
  `timeout / 4` s (a stopped am, or one cut off from the database, stops doing
  so). A standby polls `pg_try_advisory_lock` and gets the lock at once after.
- Taking the lease (`take`) then inserts the next epoch into `am_leases`, under
  the store's write lock: every write of the old am committed before that
  insert, or waits for it and then fails. The row names the holder node, the
  lock session's pid and `audit_high`, the last audit entry written before.
- Fencing: the active am's store is opened with its epoch; every write
  transaction checks, under the write lock, that the newest lease is that epoch
  and that its lock session still holds the lock (postgres.py,
  `applikant_write_lock`). A fenced am writes nothing: its transaction fails
  with LeaseLost before its first statement.
- `check` is the active am's look at its own lease (and the touch that keeps
  the session alive): False once another took it or the lock is gone; a dead
  connection raises. The daemon (daemon.py) then steps down: its names go, its
  store is closed, and it waits as a standby again.

The epoch also orders the am_* global names: the active am claims them with
stamp `-epoch`, so the newest lease wins them wherever partitions heal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from applikant.manager.store.postgres import (
    LEASE_LOCK,
    LOCK_CLASS,
    WRITE_LOCK,
    PgConnection,
    connect,
    ensure_meta,
)

__all__ = ["Lease", "LeaseInfo", "current"]


@dataclass(frozen=True)
class LeaseInfo:
    """The newest lease: who took it, when, and whether its session still holds it."""

    epoch: int
    holder: str
    acquired_at: datetime
    held: bool
    audit_high: int


def current(conn: PgConnection) -> LeaseInfo | None:
    """The newest lease in the database (None: no am ever took one)."""
    row = conn.execute(
        "SELECT l.epoch, l.holder, l.acquired_at, l.audit_high, EXISTS ("
        "  SELECT 1 FROM pg_locks k WHERE k.locktype = 'advisory' AND k.pid = l.lock_pid"
        "  AND k.granted AND k.classid = %s AND k.objid = %s AND k.objsubid = 2) AS held"
        " FROM am_leases l ORDER BY l.epoch DESC LIMIT 1",
        (LOCK_CLASS, LEASE_LOCK),
    ).fetchone()
    if row is None:
        return None
    return LeaseInfo(int(row[0]), row[1], row[2], bool(row[4]), int(row[3]))


class Lease:
    """One am's side of the lease; blocking calls (run them in a worker thread)."""

    def __init__(self, url: str, holder: str, *, timeout: float = 3.0) -> None:
        self.url = url
        self.holder = holder
        self.timeout = timeout
        self.epoch: int | None = None
        self._conn: PgConnection | None = None

    @property
    def conn(self) -> PgConnection:
        if self._conn is None:
            raise RuntimeError("the lease's connection is not open")
        return self._conn

    def connect(self) -> None:
        """Open the lock connection (psycopg errors when the server cannot be reached)."""
        conn = connect(self.url, timeout=self.timeout, application="applikant-am-lease")
        try:
            ensure_meta(conn)
            ms = int(self.timeout * 1000)
            conn.execute(f"SET idle_session_timeout = {ms}")
            conn.execute(f"SET idle_in_transaction_session_timeout = {ms}")
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it (and touch the session either way)."""
        row = self.conn.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, LEASE_LOCK)
        ).fetchone()
        return bool(row[0])

    def touch(self) -> None:
        """Keep the session alive while the am gets ready (opening its store)."""
        self.conn.execute("SELECT 1")

    def take(self) -> int:
        """With the lock held: the next epoch, recorded under the write lock (so
        the old am's writes are all before it); the epoch. The audit log must
        exist (the store is opened, and so migrated, first)."""
        conn = self.conn
        conn.execute("BEGIN")
        try:
            conn.execute(f"SET LOCAL lock_timeout = {int(self.timeout * 4000)}")
            conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (LOCK_CLASS, WRITE_LOCK))
            row = conn.execute(
                "INSERT INTO am_leases (epoch, holder, lock_pid, acquired_at, audit_high)"
                " SELECT coalesce(max(epoch), 0) + 1, %s, pg_backend_pid(), clock_timestamp(),"
                " (SELECT coalesce(max(id), 0) FROM audit_log) FROM am_leases RETURNING epoch",
                (self.holder,),
            ).fetchone()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.epoch = int(row[0])
        return self.epoch

    def check(self) -> bool:
        """Whether this am still holds the lease it took; raises when the
        connection is gone (which also means it does not)."""
        if self.epoch is None:
            return False
        row: Any = self.conn.execute(
            "SELECT epoch = %s AND lock_pid = pg_backend_pid() FROM am_leases"
            " ORDER BY epoch DESC LIMIT 1",
            (self.epoch,),
        ).fetchone()
        return row is not None and bool(row[0])

    def info(self) -> LeaseInfo | None:
        return current(self.conn)

    def close(self) -> None:
        """Give the lease up (the session ends, the lock with it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
