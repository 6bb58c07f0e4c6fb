"""Users: creation, lookups, updates, flags, passwords; bad input changes nothing."""

from __future__ import annotations

import pytest

from applikant.manager.base import Event
from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Store


def test_add_and_get(store: Store, events: list[Event]) -> None:
    user = store.add_user("Alice", actor=SYSTEM, display_name="Alice A.", email="a@x.org")
    assert user.id == "user-1" and user.login == "Alice" and not user.is_admin
    assert not user.has_password and not user.disabled
    assert store.get_user("user-1") == user
    assert store.get_user("alice") == user  # logins are case-insensitive
    assert store.get_user("ALICE") == user
    assert events == [{"kind": "user.added", "user": "user-1", "login": "Alice"}]
    assert user.model_dump(mode="json")["created_at"].endswith("Z")


def test_ids_are_stable_and_listed_by_login(store: Store) -> None:
    for login in ["carol", "alice", "Bob"]:
        store.add_user(login, actor=SYSTEM)
    assert [u.login for u in store.list_users()] == ["alice", "Bob", "carol"]
    assert store.get_user("carol").id == "user-1"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"login": "a..b"}, BadRequest),
        ({"login": ".x"}, BadRequest),
        ({"login": "-x"}, BadRequest),
        ({"login": "x" * 65}, BadRequest),
        ({"login": "j\u00fcrgen"}, BadRequest),
        ({"login": "user-7"}, BadRequest),
        ({"login": "admin"}, BadRequest),
        ({"login": "ok", "email": "nope"}, BadRequest),
        ({"login": "ok", "display_name": "a\nb"}, BadRequest),
        ({"login": "ok", "password": "short"}, BadRequest),
    ],
)
def test_bad_input_changes_nothing(
    store: Store, events: list[Event], kwargs: dict, error: type
) -> None:
    login = kwargs.pop("login")
    with pytest.raises(error):
        store.add_user(login, actor=SYSTEM, **kwargs)
    assert store.list_users() == [] and events == []
    assert store.query_audit() == []


def test_duplicate_login_case_insensitive(store: Store, alice: str) -> None:
    with pytest.raises(Conflict, match="already taken by the user 'alice'"):
        store.add_user("ALICE", actor=SYSTEM)
    assert len(store.list_users()) == 1


def test_login_clashes_with_group(store: Store) -> None:
    store.create_group("devs", actor=SYSTEM)
    with pytest.raises(Conflict, match="taken by the group 'devs'"):
        store.add_user("Devs", actor=SYSTEM)


def test_unknown_users(store: Store) -> None:
    with pytest.raises(NotFound, match="no user named 'bob'"):
        store.get_user("bob")
    with pytest.raises(NotFound, match="no user user-42"):
        store.get_user("user-42")
    with pytest.raises(NotFound):
        store.disable_user("nobody", actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.get_user("../etc")


def test_group_name_is_not_a_user(store: Store) -> None:
    store.create_group("devs", actor=SYSTEM)
    with pytest.raises(NotFound):
        store.get_user("devs")


def test_update_disable_enable_admin(store: Store, alice: str, events: list[Event]) -> None:
    events.clear()
    user = store.update_user(alice, actor=SYSTEM, display_name="Alice", email="al@x.org")
    assert (user.display_name, user.email) == ("Alice", "al@x.org")
    assert store.disable_user("alice", actor=SYSTEM).disabled
    assert store.list_users(include_disabled=False) == []
    assert not store.enable_user(alice, actor=SYSTEM).disabled
    assert store.set_admin(alice, True, actor=SYSTEM).is_admin
    with pytest.raises(BadRequest):
        store.set_admin(alice, "yes", actor=SYSTEM)  # type: ignore[arg-type]
    assert [e["kind"] for e in events] == [
        "user.updated",
        "user.disabled",
        "user.enabled",
        "user.updated",
    ]
    actions = [e.action for e in store.query_audit(limit=4)]
    assert actions == ["user.admin", "user.enable", "user.disable", "user.update"]


def test_passwords(store: Store, alice: str) -> None:
    assert store.verify_password("alice", "alice-password") == store.get_user(alice)
    assert store.verify_password("ALICE", "alice-password") is not None
    assert store.verify_password("alice", "wrong-password") is None
    assert store.verify_password("nobody", "alice-password") is None
    assert store.verify_password("../x", "alice-password") is None
    store.set_password(alice, "new-password", actor=SYSTEM)
    assert store.verify_password("alice", "alice-password") is None
    assert store.verify_password("alice", "new-password") is not None
    store.disable_user(alice, actor=SYSTEM)
    assert store.verify_password("alice", "new-password") is None
    store.enable_user(alice, actor=SYSTEM)
    store.set_password(alice, None, actor=SYSTEM)
    assert store.verify_password("alice", "new-password") is None
    assert not store.get_user(alice).has_password


def test_password_hash_never_leaves_the_store(store: Store, alice: str) -> None:
    dumped = str(store.get_user(alice).model_dump(mode="json"))
    assert "argon2" not in dumped
    assert all("argon2" not in str(e.details) for e in store.query_audit())


def test_rehash_on_login(tmp_path) -> None:
    path = str(tmp_path / "am.sqlite3")
    with Store(path, passwords=Passwords(fast=True)) as weak:
        weak.add_user("alice", actor=SYSTEM, password="alice-password")
        old = weak._conn.execute("SELECT password_hash FROM users").fetchone()[0]
    strong = Passwords()
    with Store(path, passwords=strong) as s:
        assert s.verify_password("alice", "alice-password") is not None
        new = s._conn.execute("SELECT password_hash FROM users").fetchone()[0]
        assert new != old and not strong.needs_rehash(new)


def test_passwords_module() -> None:
    p = Passwords(fast=True)
    encoded = p.hash("correct horse")
    assert p.verify(encoded, "correct horse") and not p.verify(encoded, "wrong")
    assert not p.verify(None, "x") and not p.verify("garbage", "x")
    assert not p.needs_rehash(encoded) and p.needs_rehash("garbage")
