"""What the store gained for the services: pushes recorded once per event id
(schema version 2), read-only connections, and the request models' messages."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from applikant.manager.errors import BadRequest
from applikant.manager.store import SYSTEM, Event, Store
from applikant.manager.store.sqlite import MIGRATIONS, migrate, schema_version
from applikant.schema.base import parse
from applikant.schema.hooks import HookCall
from applikant.schema.repos import CheckAccess
from applikant.schema.users import AddUser
from tests.manager.conftest import FAST

OLD, NEW = "1" * 40, "2" * 40


def test_push_with_event_id_is_recorded_once(store: Store, alice: str, events: list[Event]) -> None:
    store.repos.create("alice/app", actor=SYSTEM)
    events.clear()
    refs = [{"refname": "refs/heads/main", "old": OLD, "new": NEW}]
    first = store.audit.record_push("alice/app", refs, actor=alice, node="af@git", event_id="e-1")
    again = store.audit.record_push("alice/app", refs, actor=alice, node="af@git", event_id="e-1")
    assert first == again and first.event_id == "e-1"
    assert [e["kind"] for e in events] == ["repo.pushed"] and events[0]["event_id"] == "e-1"
    assert len(store.audit.query(action="push")) == 1
    # A duplicate is recognised even when the repository has gone since.
    store.repos.delete("alice/app", actor=SYSTEM)
    assert store.audit.record_push("alice/app", refs, actor=alice, event_id="e-1") == first
    with pytest.raises(BadRequest, match="event_id"):
        store.audit.record_push("alice/app", refs, actor=alice, event_id="../x")


def test_migration_from_version_1_keeps_the_log(tmp_path: Path) -> None:
    path = str(tmp_path / "am.sqlite3")
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, MIGRATIONS[:1]) == 1
    conn.execute(
        "INSERT INTO audit_log (time, actor, action) VALUES ('2024-01-01T00:00:00.000000Z', 'system', 'x.y')"
    )
    conn.close()
    with Store(path, passwords=FAST) as store:
        assert store.schema_version == len(MIGRATIONS) >= 3
        assert store.audit.query()[0].action == "x.y"
        assert store.audit.query()[0].event_id is None


def test_migration_from_version_2_adds_tokens(tmp_path: Path) -> None:
    path = str(tmp_path / "am.sqlite3")
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, MIGRATIONS[:2]) == 2
    conn.execute("INSERT INTO owners (id, name, kind) VALUES (1, 'alice', 'user')")
    conn.execute("INSERT INTO users (id, created_at) VALUES (1, '2024-01-01T00:00:00.000000Z')")
    conn.close()
    with Store(path, passwords=FAST) as store:
        assert store.schema_version == len(MIGRATIONS) >= 3
        made = store.tokens.create("alice", "ci", actor=SYSTEM)
        assert store.tokens.verify(made.token).login == "alice"  # type: ignore[union-attr]


def test_read_only_store_cannot_write(tmp_path: Path) -> None:
    path = str(tmp_path / "am.sqlite3")
    writer = Store(path, passwords=FAST)
    reader = Store(path, passwords=FAST, read_only=True)
    try:
        writer.users.add("alice", actor=SYSTEM)
        assert reader.users.get("alice").login == "alice"  # sees committed changes at once
        with pytest.raises(sqlite3.OperationalError):
            reader.users.add("bob", actor=SYSTEM)
        assert schema_version(reader.core.connection) == len(MIGRATIONS)
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize(
    "args,words",
    [
        ({}, "field 'actor' is required"),
        ({"actor": "system", "login": 1}, "field 'login' must be a string"),
        (
            {"actor": "system", "login": "a", "is_admin": "yes"},
            "field 'is_admin' must be true or false",
        ),
        ({"actor": "system", "login": "a", "extra": 1}, "unknown field 'extra'"),
        (["system"], "must be a map"),
    ],
)
def test_request_messages_name_method_and_field(args: object, words: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse(AddUser, args, "am_user_db.add_user")
    assert info.value.message.startswith("am_user_db.add_user: ")
    assert words in info.value.message


def test_nested_fields_are_named_by_path() -> None:
    with pytest.raises(BadRequest, match=r"field 'refs\.0\.ff' must be true or false"):
        parse(
            HookCall,
            {
                "hook": "update",
                "repo": "a/b",
                "user": "user-1",
                "refs": [{"ref": "refs/heads/x", "old": OLD, "new": NEW, "ff": "no"}],
            },
            "am_hook_api.handle_hook",
        )
    with pytest.raises(BadRequest, match="field 'access' must be 'read', 'write' or 'admin'"):
        parse(CheckAccess, {"user": None, "repo": "a/b", "access": "all"}, "x")
