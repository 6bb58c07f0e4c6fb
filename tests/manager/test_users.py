"""Users: creation, lookups, updates, flags, passwords; bad input changes nothing."""

from __future__ import annotations

import pytest

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Event, Store
from applikant.schema.users import User


def test_add_and_get(store: Store, events: list[Event]) -> None:
    user = store.users.add("Alice", actor=SYSTEM, display_name="Alice A.", email="a@x.org")
    assert user.id == "user-1" and user.login == "Alice" and not user.is_admin
    assert not user.has_password and not user.disabled
    assert store.users.get("user-1") == user
    assert store.users.get("alice") == user  # logins are case-insensitive
    assert store.users.get("ALICE") == user
    assert events == [{"kind": "user.added", "user": "user-1", "login": "Alice"}]
    assert user.model_dump(mode="json")["created_at"].endswith("Z")


def test_ids_are_stable_and_listed_by_login(store: Store) -> None:
    for login in ["carol", "alice", "Bob"]:
        store.users.add(login, actor=SYSTEM)
    assert [u.login for u in store.users.all()] == ["alice", "Bob", "carol"]
    assert store.users.get("carol").id == "user-1"


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
    kwargs = dict(kwargs)  # the same dict is given to the test on each backend
    login = kwargs.pop("login")
    with pytest.raises(error):
        store.users.add(login, actor=SYSTEM, **kwargs)
    assert store.users.all() == [] and events == []
    assert store.audit.query() == []


def test_duplicate_login_case_insensitive(store: Store, alice: str) -> None:
    with pytest.raises(Conflict, match="already taken by the user 'alice'"):
        store.users.add("ALICE", actor=SYSTEM)
    assert len(store.users.all()) == 1


def test_login_clashes_with_group(store: Store) -> None:
    store.groups.create("devs", actor=SYSTEM)
    with pytest.raises(Conflict, match="taken by the group 'devs'"):
        store.users.add("Devs", actor=SYSTEM)


def test_unknown_users(store: Store) -> None:
    with pytest.raises(NotFound, match="no user named 'bob'"):
        store.users.get("bob")
    with pytest.raises(NotFound, match="no user user-42"):
        store.users.get("user-42")
    with pytest.raises(NotFound):
        store.users.disable("nobody", actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.users.get("../etc")


def test_group_name_is_not_a_user(store: Store) -> None:
    store.groups.create("devs", actor=SYSTEM)
    with pytest.raises(NotFound):
        store.users.get("devs")


def test_update_disable_enable_admin(store: Store, alice: str, events: list[Event]) -> None:
    events.clear()
    user = store.users.update(alice, actor=SYSTEM, display_name="Alice", email="al@x.org")
    assert (user.display_name, user.email) == ("Alice", "al@x.org")
    assert store.users.disable("alice", actor=SYSTEM).disabled
    assert store.users.all(include_disabled=False) == []
    assert not store.users.enable(alice, actor=SYSTEM).disabled
    assert store.users.set_admin(alice, True, actor=SYSTEM).is_admin
    with pytest.raises(BadRequest):
        store.users.set_admin(alice, "yes", actor=SYSTEM)  # type: ignore[arg-type]
    assert [e["kind"] for e in events] == [
        "user.updated",
        "user.disabled",
        "user.enabled",
        "user.updated",
    ]
    actions = [e.action for e in store.audit.query(limit=4)]
    assert actions == ["user.admin", "user.enable", "user.disable", "user.update"]


def test_passwords(store: Store, alice: str) -> None:
    assert store.users.verify_password("alice", "alice-password") == store.users.get(alice)
    assert store.users.verify_password("ALICE", "alice-password") is not None
    assert store.users.verify_password("alice", "wrong-password") is None
    assert store.users.verify_password("nobody", "alice-password") is None
    assert store.users.verify_password("../x", "alice-password") is None
    store.users.set_password(alice, "new-password", actor=SYSTEM)
    assert store.users.verify_password("alice", "alice-password") is None
    assert store.users.verify_password("alice", "new-password") is not None
    store.users.disable(alice, actor=SYSTEM)
    assert store.users.verify_password("alice", "new-password") is None
    store.users.enable(alice, actor=SYSTEM)
    store.users.set_password(alice, None, actor=SYSTEM)
    assert store.users.verify_password("alice", "new-password") is None
    assert not store.users.get(alice).has_password


def test_password_hash_never_leaves_the_store(store: Store, alice: str) -> None:
    dumped = str(store.users.get(alice).model_dump(mode="json"))
    assert "argon2" not in dumped
    assert all("argon2" not in str(e.details) for e in store.audit.query())


def test_rehash_on_login(tmp_path) -> None:
    path = str(tmp_path / "am.sqlite3")
    with Store(path, passwords=Passwords(fast=True)) as weak:
        weak.users.add("alice", actor=SYSTEM, password="alice-password")
        old = weak.core.connection.execute("SELECT password_hash FROM users").fetchone()[0]
    strong = Passwords()
    with Store(path, passwords=strong) as s:
        assert s.users.verify_password("alice", "alice-password") is not None
        new = s.core.connection.execute("SELECT password_hash FROM users").fetchone()[0]
        assert new != old and not strong.needs_rehash(new)


def test_passwords_module() -> None:
    p = Passwords(fast=True)
    encoded = p.hash("correct horse")
    assert p.verify(encoded, "correct horse") and not p.verify(encoded, "wrong")
    assert not p.verify(None, "x") and not p.verify("garbage", "x")
    assert not p.needs_rehash(encoded) and p.needs_rehash("garbage")


def test_delete_takes_keys_tokens_memberships_and_grants_and_never_reuses_the_id(
    store: Store, events: list[Event], alice: str, bob: str, root: str
) -> None:
    from tests.manager.helpers import random_ed25519_line

    newest = store.users.add("carol", actor=SYSTEM)
    store.keys.add(newest.id, random_ed25519_line(), actor=SYSTEM)
    store.tokens.create(newest.id, "ci", actor=SYSTEM)
    store.groups.create("team", actor=SYSTEM)
    store.groups.add_member("team", "carol", actor=SYSTEM)
    store.repos.create("alice/app", actor=alice)
    store.access.grant("alice/app", "carol", "write", actor=SYSTEM)
    events.clear()
    gone = store.users.delete("carol", actor="cli:root")
    assert gone.id == newest.id and gone.login == "carol"
    assert events == [{"kind": "user.deleted", "user": newest.id, "login": "carol"}]
    with pytest.raises(NotFound):
        store.users.get(newest.id)
    with pytest.raises(NotFound):  # a grant to the deleted id names no one
        store.access.grant("alice/app", newest.id, "read", actor=SYSTEM)
    assert store.groups.get("team").members == []
    assert store.access.grants("alice/app") == []
    assert store.keys.all() == [] and store.audit.counts().users == 3
    (entry,) = store.audit.query(action="user.delete")
    assert entry.actor == "cli:root" and entry.details["login"] == "carol"
    # The login is free again; the id (it was the newest) is never given again.
    again = store.users.add("carol", actor=SYSTEM)
    assert again.id != newest.id
    assert not store.access.check(newest.id, "alice/app", "read").allowed


def test_delete_is_refused_while_owning_repositories_or_for_the_last_admin(
    store: Store, alice: str, root: str
) -> None:
    store.repos.create("alice/one", actor=alice)
    store.repos.create("alice/two", actor=alice)
    with pytest.raises(Conflict, match=r"alice owns 2 repositories \(alice/one, alice/two\)"):
        store.users.delete("alice", actor=SYSTEM)
    assert store.users.get("alice").login == "alice"  # nothing changed
    with pytest.raises(Conflict, match="root is the last site admin"):
        store.users.delete("root", actor=SYSTEM)
    with pytest.raises(NotFound):
        store.users.delete("nobody", actor=SYSTEM)


def test_a_page_of_users_is_the_models_json(store: Store) -> None:
    """The page's dicts are what the service sends: the models' JSON exactly."""
    store.users.add("zed", actor=SYSTEM, display_name="Zed", email="z@example.org")
    store.users.add("amy", actor=SYSTEM, password="amy-password-1", is_admin=True)
    page = store.users.page().items
    assert page == [store.users.get(d["login"]).model_dump(mode="json") for d in page]
    assert [list(d) for d in page] == [list(User.model_fields)] * 2
