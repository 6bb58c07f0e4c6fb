"""Opening the database (store/sqlite.py): pragmas, migrations, refusing a newer
schema, change hooks."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from applikant.manager.errors import SchemaTooNew
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Store
from applikant.manager.store.sqlite import MIGRATIONS, migrate, schema_version

FAST = Passwords(fast=True)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """This module is about SQLite files: its store is on one only."""
    return str(tmp_path / "am.sqlite3")


def test_pragmas(store: Store) -> None:
    conn = store.core.connection
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.schema_version == len(MIGRATIONS) == schema_version(conn)


def test_reopen_keeps_data_and_version(tmp_path: Path) -> None:
    path = str(tmp_path / "am.sqlite3")
    with Store(path, passwords=FAST) as store:
        store.users.add("alice", actor=SYSTEM)
    with Store(path, passwords=FAST) as store:
        assert store.users.get("alice").id == "user-1"
        assert store.schema_version == len(MIGRATIONS)


def test_old_database_is_upgraded(tmp_path: Path) -> None:
    path = str(tmp_path / "am.sqlite3")
    with Store(path, passwords=FAST) as store:
        store.users.add("alice", actor=SYSTEM)
    added_sql = "ALTER TABLE users ADD COLUMN shoe_size INTEGER NOT NULL DEFAULT 42;"

    def python_step(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE users SET shoe_size = shoe_size + 1")

    migrations = [*MIGRATIONS, added_sql, python_step]
    with Store(path, passwords=FAST, migrations=migrations) as store:
        assert store.schema_version == len(MIGRATIONS) + 2
        assert store.core.connection.execute("SELECT shoe_size FROM users").fetchone()[0] == 43
        assert store.users.get("alice").login == "alice"


def test_failed_migration_leaves_previous_version(tmp_path: Path) -> None:
    path = str(tmp_path / "am.sqlite3")
    Store(path, passwords=FAST).close()
    broken = [*MIGRATIONS, "CREATE TABLE extra (x INTEGER);\nTHIS IS NOT SQL;"]
    with pytest.raises(sqlite3.OperationalError):
        Store(path, passwords=FAST, migrations=broken)
    conn = sqlite3.connect(path)
    assert schema_version(conn) == len(MIGRATIONS)
    assert (
        conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'extra'").fetchone()[0] == 0
    )
    conn.close()


def test_newer_database_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "am.sqlite3")
    Store(path, passwords=FAST, migrations=[*MIGRATIONS, "CREATE TABLE later (x);"]).close()
    with pytest.raises(SchemaTooNew, match="upgrade applikant"):
        Store(path, passwords=FAST)


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    conn = sqlite3.connect(str(tmp_path / "x.db"), isolation_level=None)
    assert migrate(conn) == len(MIGRATIONS)
    assert migrate(conn) == len(MIGRATIONS)
    conn.close()


def test_failing_listener_does_not_undo_the_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def listener(event: dict) -> None:
        raise RuntimeError("listener broke")

    with Store(str(tmp_path / "am.sqlite3"), passwords=FAST, on_change=listener) as store:
        with caplog.at_level(logging.ERROR):
            store.users.add("alice", actor=SYSTEM)
        assert store.users.get("alice")
        assert "on_change listener failed" in caplog.text


def test_listener_may_read_the_store(tmp_path: Path) -> None:
    seen: list[str] = []
    holder: list[Store] = []

    def listener(event: dict) -> None:
        if event["kind"] == "user.added":
            seen.append(holder[0].users.get(event["user"]).login)

    with Store(str(tmp_path / "am.sqlite3"), passwords=FAST, on_change=listener) as store:
        holder.append(store)
        store.users.add("alice", actor=SYSTEM)
    assert seen == ["alice"]
