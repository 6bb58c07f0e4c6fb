"""SSH keys in the store: one owner per key, owner named to admins only, indexed lookups."""

from __future__ import annotations

import pytest

from applikant.manager.base import Event
from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.store import SYSTEM, Store
from tests.manager.helpers import RealKeys, random_ed25519_line


def test_add_list_get_remove(
    store: Store, alice: str, real_keys: RealKeys, events: list[Event]
) -> None:
    events.clear()
    text = real_keys.public("ed", "ed25519")
    key = store.add_key(alice, text, actor=SYSTEM, node="aw@web")
    bits, fingerprint, _ = real_keys.keygen_fingerprint("ed")
    assert (key.user, key.login, key.fingerprint, key.bits) == (alice, "alice", fingerprint, bits)
    assert key.title == "ed@test" and key.key_type == "ssh-ed25519"
    assert key.public_key == text.strip() and key.last_used_at is None
    assert store.list_keys("alice") == [key]
    assert store.get_key(key.id) == key == store.get_key(fingerprint)
    assert store.find_key_by_fingerprint(fingerprint) == key
    assert store.all_keys() == [key]
    assert events == [
        {
            "kind": "key.added",
            "user": alice,
            "login": "alice",
            "key": key.id,
            "fingerprint": fingerprint,
        }
    ]
    (entry,) = store.query_audit(action="key")
    assert (
        entry.action == "key.add"
        and entry.node == "aw@web"
        and entry.details["fingerprint"] == fingerprint
    )

    removed = store.remove_key(key.id, actor=SYSTEM)
    assert removed == key
    assert store.list_keys(alice) == [] and store.find_key_by_fingerprint(fingerprint) is None
    assert events[-1]["kind"] == "key.removed" and events[-1]["fingerprint"] == fingerprint


def test_title(store: Store, alice: str) -> None:
    assert store.add_key(alice, random_ed25519_line(""), actor=SYSTEM).title == "ssh-ed25519 key"
    assert (
        store.add_key(alice, random_ed25519_line("c"), actor=SYSTEM, title="laptop").title
        == "laptop"
    )
    with pytest.raises(BadRequest, match="title"):
        store.add_key(alice, random_ed25519_line(), actor=SYSTEM, title="x" * 129)


def test_garbage_and_short_rsa_change_nothing(
    store: Store, alice: str, real_keys: RealKeys
) -> None:
    with pytest.raises(BadRequest, match="2048"):
        store.add_key(alice, real_keys.public("rsa1024", "rsa", 1024), actor=SYSTEM)
    with pytest.raises(BadRequest, match="private key"):
        store.add_key(alice, real_keys.make("ed", "ed25519").read_text(), actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.add_key(alice, "garbage", actor=SYSTEM)
    assert store.list_keys(alice) == [] and store.query_audit(action="key") == []


def test_unknown_user(store: Store) -> None:
    with pytest.raises(NotFound, match="no user named 'ghost'"):
        store.add_key("ghost", random_ed25519_line(), actor=SYSTEM)


def test_duplicate_key_names_owner_only_to_admins(
    store: Store, alice: str, bob: str, root: str
) -> None:
    line = random_ed25519_line()
    store.add_key(alice, line, actor=alice)
    with pytest.raises(Conflict) as info:
        store.add_key(bob, line, actor=bob)
    assert info.value.message == (
        "the key is already registered to another account; use a different key, or ask an admin"
    )
    assert "alice" not in info.value.message
    with pytest.raises(Conflict, match=r"another account: alice \(user-1\)"):
        store.add_key(bob, line, actor=root)
    with pytest.raises(Conflict, match="alice"):
        store.add_key(bob, line, actor=SYSTEM)
    with pytest.raises(Conflict, match="already registered to alice as"):
        store.add_key(alice, line, actor=alice)
    # A disabled admin is no admin.
    store.disable_user(root, actor=SYSTEM)
    with pytest.raises(Conflict) as info:
        store.add_key(bob, line, actor=root)
    assert "alice" not in info.value.message
    assert store.list_keys(bob) == []


def test_remove_own_key_only(store: Store, alice: str, bob: str) -> None:
    key = store.add_key(alice, random_ed25519_line(), actor=alice)
    with pytest.raises(NotFound, match="bob has no key"):
        store.remove_key(key.id, actor=bob, user=bob)
    store.remove_key(key.fingerprint, actor=alice, user=alice)
    with pytest.raises(NotFound):
        store.remove_key(key.id, actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.get_key("whatever")


def test_disabled_users_keys_hidden_from_sshd(store: Store, alice: str, bob: str) -> None:
    ka = store.add_key(alice, random_ed25519_line(), actor=SYSTEM)
    kb = store.add_key(bob, random_ed25519_line(), actor=SYSTEM)
    store.disable_user(alice, actor=SYSTEM)
    assert store.find_key_by_fingerprint(ka.fingerprint) is None
    assert store.find_key_by_fingerprint(ka.fingerprint, include_disabled=True) == ka
    assert store.all_keys() == [kb]
    assert store.all_keys(include_disabled=True) == [ka, kb]


def test_touch_last_used(store: Store, alice: str) -> None:
    key = store.add_key(alice, random_ed25519_line(), actor=SYSTEM)
    store.touch_key(key.fingerprint)
    assert store.get_key(key.id).last_used_at is not None
    store.touch_key("SHA256:unknown")  # harmless


def test_find_by_fingerprint_uses_the_index(store: Store) -> None:
    from applikant.manager.keys import FIND_KEY_SQL

    plan = store._conn.execute("EXPLAIN QUERY PLAN " + FIND_KEY_SQL, ("SHA256:x",)).fetchall()
    details = [row["detail"] for row in plan]
    assert any("USING INDEX" in d and "ssh_keys" in d for d in details), details
    assert not any(d.startswith("SCAN") for d in details), details


def test_update_title_keeps_the_key(
    store: Store, alice: str, bob: str, events: list[Event]
) -> None:
    key = store.add_key(alice, random_ed25519_line(), actor=SYSTEM, title="old")
    events.clear()
    changed = store.update_key(key.id, "  laptop  ", actor=alice, user=alice)
    assert changed.id == key.id and changed.fingerprint == key.fingerprint
    assert changed.title == "laptop" and store.get_key(key.id).title == "laptop"
    entry = store.query_audit(action="key.update", limit=1)[0]
    assert entry.details["old_title"] == "old" and entry.details["title"] == "laptop"
    assert [e["kind"] for e in events] == ["key.updated"]
    # Someone else's key is not found; bad titles are refused; nothing changes.
    with pytest.raises(NotFound):
        store.update_key(key.id, "mine now", actor=bob, user=bob)
    for bad in ("", "  ", "x" * 129, "a\nb"):
        with pytest.raises(BadRequest):
            store.update_key(key.id, bad, actor=SYSTEM)
    with pytest.raises(NotFound):
        store.update_key("key-99999", "x", actor=SYSTEM)
    assert store.get_key(key.id).title == "laptop"
