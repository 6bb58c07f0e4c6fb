"""`applikant backup` and `restore` when am's store is on PostgreSQL: pg_dump into
the backup, pg_restore into an empty database (or, with --force, over a fresh
install's tables); never across kinds of store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from applikant.frontend.repodisk import RepoDisk
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Store
from harness.postgres import PgServer
from tests.test_backup import ED25519, cli, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
FAST = Passwords(fast=True)


def install(base: Path, db: str) -> Path:
    data = base / "data"
    data.mkdir(parents=True)
    config = base / "applikant.toml"
    config.write_text(f'[node]\ndata_dir = "{data}"\n\n[am]\ndb = "{db}"\n')
    return config


def test_backup_and_restore_a_postgresql_store(tmp_path: Path, pg_server: PgServer) -> None:
    source = pg_server.create_database()
    config = install(tmp_path / "old", source)
    with Store(source, passwords=FAST) as store:
        alice = store.users.add("alice", actor=SYSTEM, password="alice-password")
        store.users.add("bob", actor=SYSTEM)
        store.keys.add(alice.id, ED25519, actor=SYSTEM)
        store.repos.create("alice/project", actor=alice.id)
        store.access.grant("alice/project", "bob", "write", actor=alice.id)
    disk = RepoDisk(str(tmp_path / "old" / "data" / "repos"), "/bin/true")
    disk.create("alice/project")
    work = tmp_path / "work"
    run("git", "clone", "-q", disk.path("alice/project"), str(work))
    (work / "f").write_text("x\n")
    run("git", "add", "f", cwd=work)
    run("git", "commit", "-q", "-m", "one", cwd=work)
    run("git", "push", "-q", "origin", "HEAD:refs/heads/main", cwd=work)

    r = cli(config, "backup", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert (manifest["database"], manifest["database_kind"]) == ("am.pgdump", "postgresql")

    # Into an empty database: everything back, and the store is at its schema.
    target = pg_server.create_database()
    new_config = install(tmp_path / "new", target)
    r = cli(new_config, "restore", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    with Store(target, passwords=FAST) as store:
        assert [u.login for u in store.users.all()] == ["alice", "bob"]
        assert store.users.verify_password("alice", "alice-password") is not None
        assert [g.grantee for g in store.access.grants("alice/project")] == ["bob"]
        assert [k.title for k in store.keys.of("alice")] == ["alice@laptop"]
        assert store.audit.query(action="perm.grant")
        store.users.add("carol", actor=SYSTEM)  # ids go on after the restored ones
        assert store.users.get("carol").id == "user-3"
    restored = RepoDisk(str(tmp_path / "new" / "data" / "repos"), "/bin/true")
    assert restored.list() == ["alice/project"]

    # A database that holds am's tables is replaced only with --force.
    again = install(tmp_path / "again", target)
    r = cli(again, "restore", str(tmp_path / "b"))
    assert r.returncode == 1 and "--force" in r.stderr, r.stderr
    r = cli(again, "restore", "--force", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    with Store(target, passwords=FAST) as store:
        assert [u.login for u in store.users.all()] == ["alice", "bob"]

    # Never across kinds of store.
    sqlite_config = tmp_path / "sqlite.toml"
    (tmp_path / "sq").mkdir()
    sqlite_config.write_text(f'[node]\ndata_dir = "{tmp_path / "sq"}"\n')
    r = cli(sqlite_config, "restore", str(tmp_path / "b"))
    assert r.returncode == 1 and "same kind of store" in r.stderr, r.stderr
    for url in (source, target):
        pg_server.drop_database(url)


def test_init_with_a_config_on_postgresql_makes_the_admin_there(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """A second manager host runs `applikant init` with the shared config: the
    admin is made once, in the shared database, and nothing in a SQLite file."""
    import os
    import subprocess
    import sys

    url = pg_server.create_database()
    config = tmp_path / "applikant.toml"
    data = tmp_path / "data"
    for host in ("one", "two"):
        config.write_text(
            f'[node]\ndata_dir = "{data}"\ncookie_file = "{data / "cookie"}"\n\n'
            f'[am]\ndb = "{url}"\n'
        )
        r = subprocess.run(
            [sys.executable, "-m", "applikant.cli.main", "init", "--data-dir", str(data)],
            env=dict(os.environ, APPLIKANT_CONFIG=str(config)),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, (host, r.stderr)
        assert f"database      {url}" in r.stdout
        assert ("password:" in r.stdout) == (host == "one"), r.stdout  # made once
        (data / "cookie").unlink()  # the next host is a fresh one
    assert not (data / "am.sqlite3").exists()
    with Store(url, passwords=FAST) as store:
        assert [(u.login, u.is_admin) for u in store.users.all()] == [("root", True)]
    pg_server.drop_database(url)
