"""The store's core: one transaction across parts, savepoints for nested
changes, events after the commit, deliveries made with the change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from applikant.manager import store as store_package
from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.store import SYSTEM, Event, Store
from applikant.manager.store.backend import standard_upsert
from applikant.manager.store.sqlite import SqliteBackend
from tests.manager.conftest import FAST
from tests.manager.helpers import random_ed25519_line


class Boom(Exception):
    pass


def test_one_transaction_spans_parts(store: Store, events: list[Event]) -> None:
    with store.transaction(SYSTEM, "cli@host") as tx:
        store.groups.create("team", actor=SYSTEM)
        store.repos.create("team/app", actor=SYSTEM)
        assert store.repos.get("team/app").owner_kind == "group"  # reads see it
        assert events == []  # nothing announced before the commit
    assert [e["kind"] for e in events] == ["group.created", "repo.created"]
    entries = store.audit.query(limit=10)
    assert [e.action for e in entries] == ["repo.create", "group.create"]
    assert {e.time for e in entries} == {entries[0].time}  # one transaction, one time
    assert tx.actor == SYSTEM and tx.node == "cli@host"


def test_a_failure_anywhere_undoes_every_part(store: Store, events: list[Event]) -> None:
    with pytest.raises(Boom), store.transaction(SYSTEM):
        store.users.add("alice", actor=SYSTEM)
        store.repos.create("alice/app", actor=SYSTEM)
        raise Boom
    assert store.users.all() == [] and store.repos.all() == []
    assert store.audit.query() == [] and events == []
    with pytest.raises(NotFound), store.transaction(SYSTEM):
        store.users.add("alice", actor=SYSTEM)
        store.repos.create("ghost/app", actor=SYSTEM)  # no such owner
    assert store.users.all() == [] and events == []


def test_a_nested_failure_caught_undoes_only_itself(store: Store, events: list[Event]) -> None:
    with store.transaction(SYSTEM):
        store.users.add("alice", actor=SYSTEM)
        with pytest.raises(Conflict):
            store.users.add("ALICE", actor=SYSTEM)  # the name is taken
        with pytest.raises(Boom), store.transaction("user-1"):
            store.repos.create("alice/one", actor="user-1")
            raise Boom
        store.repos.create("alice/two", actor="user-1")
    assert [r.full_name for r in store.repos.all()] == ["alice/two"]
    assert [e["kind"] for e in events] == ["user.added", "repo.created"]
    assert [(e.action, e.actor) for e in store.audit.query()] == [
        ("repo.create", "user-1"),
        ("user.add", SYSTEM),
    ]


def test_deliveries_are_made_once_at_the_commit(store: Store) -> None:
    store.users.add("alice", actor=SYSTEM)
    store.webhooks.add(None, "http://127.0.0.1:9/h", ["repo_created"], actor=SYSTEM, ping=False)
    made = store.webhooks.queued_deliveries
    with store.transaction(SYSTEM):
        store.repos.create("alice/one", actor=SYSTEM)
        store.repos.create("alice/two", actor=SYSTEM)
        assert store.webhooks.queued_deliveries == made  # not yet: at the commit
    assert store.webhooks.queued_deliveries == made + 2
    with pytest.raises(Boom), store.transaction(SYSTEM):
        store.repos.create("alice/three", actor=SYSTEM)
        raise Boom
    assert store.webhooks.queued_deliveries == made + 2


def test_bad_actor_or_node_is_refused_before_anything(store: Store) -> None:
    for actor, node in (("", None), ("x" * 200, None), (SYSTEM, "n\x00de")):
        with pytest.raises(BadRequest, match=r"actor|node"), store.transaction(actor, node):
            pass
    assert store.audit.query() == []


class Recording(SqliteBackend):
    """SQLite, keeping every statement the store prepares."""

    def __init__(self) -> None:
        self.statements: set[str] = set()

    def prepare(self, sql: str) -> str:
        self.statements.add(sql)
        return sql


SQLITE_ONLY = re.compile(
    r"INSERT OR|REPLACE INTO|PRAGMA|\bGLOB\b|\bIS \?|AUTOINCREMENT|\browid\b", re.I
)


def test_parts_speak_standard_sql_through_the_backend(tmp_path: Path) -> None:
    """Every statement goes through the backend's `prepare`, and none is
    spelled SQLite's own way (not even `rowid`: the deliveries' order is a column)."""
    backend = Recording()
    with Store(str(tmp_path / "am.sqlite3"), backend=backend, passwords=FAST) as store:
        alice = store.users.add("alice", actor=SYSTEM, password="alice-password")
        store.users.verify_password("alice", "alice-password")
        key = store.keys.add(alice.id, random_ed25519_line(), actor=SYSTEM)
        store.keys.touch(key.fingerprint)
        token = store.tokens.create(alice.id, "ci", actor=SYSTEM)
        store.tokens.verify(token.token)
        store.groups.create("team", actor=SYSTEM)
        store.groups.add_member("team", alice.id, actor=SYSTEM)
        store.repos.create("team/app", actor=SYSTEM)
        store.access.grant("team/app", alice.id, "admin", actor=SYSTEM)
        store.branches.protect("team/app", "main", actor=SYSTEM)
        hook = store.webhooks.add("team/app", "http://127.0.0.1:9/h", ["push"], actor=SYSTEM)
        store.audit.record_push(
            "team/app",
            [{"refname": "refs/heads/main", "old": "1" * 40, "new": "2" * 40}],
            actor=alice.id,
        )
        store.builds.enqueue(
            "team/app", [{"ref": "refs/heads/main", "commit": "2" * 40}], actor=SYSTEM
        )
        assert store.webhooks.deliveries(hook.id)
        assert store.audit.query() and store.audit.counts().repos == 1
    assert len(backend.statements) > 40
    for sql in backend.statements:
        assert not SQLITE_ONLY.search(sql), sql
    assert any("ON CONFLICT" in sql for sql in backend.statements)


def test_parts_never_touch_the_connection() -> None:
    parts = Path(store_package.__file__).parent
    for path in parts.glob("*.py"):
        if path.name in ("core.py", "backend.py", "sqlite.py", "postgres.py"):
            continue
        text = path.read_text()
        assert ".connection" not in text and ".execute(" not in text, path.name


def test_upsert_is_standard_sql() -> None:
    sql = standard_upsert("t", ("a", "b"), ("a", "b", "c"), ("c",))
    assert sql == (
        "INSERT INTO t (a, b, c) VALUES (?, ?, ?) ON CONFLICT (a, b) DO UPDATE SET c = excluded.c"
    )
