"""SSH keys in the store: one owner per key, owner named to admins only, indexed lookups."""

from __future__ import annotations

import pytest

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.store import SYSTEM, Event, Store
from tests.manager.helpers import RealKeys, plan, random_ed25519_line, scans_a_table, uses_index


def test_add_list_get_remove(
    store: Store, alice: str, real_keys: RealKeys, events: list[Event]
) -> None:
    events.clear()
    text = real_keys.public("ed", "ed25519")
    key = store.keys.add(alice, text, actor=SYSTEM, node="aw@web")
    bits, fingerprint, _ = real_keys.keygen_fingerprint("ed")
    assert (key.user, key.login, key.fingerprint, key.bits) == (alice, "alice", fingerprint, bits)
    assert key.title == "ed@test" and key.key_type == "ssh-ed25519"
    assert key.public_key == text.strip() and key.last_used_at is None
    assert store.keys.of("alice") == [key]
    assert store.keys.get(key.id) == key == store.keys.get(fingerprint)
    assert store.keys.find(fingerprint) == key
    assert store.keys.all() == [key]
    assert events == [
        {
            "kind": "key.added",
            "user": alice,
            "login": "alice",
            "key": key.id,
            "fingerprint": fingerprint,
        }
    ]
    (entry,) = store.audit.query(action="key")
    assert (
        entry.action == "key.add"
        and entry.node == "aw@web"
        and entry.details["fingerprint"] == fingerprint
    )

    removed = store.keys.remove(key.id, actor=SYSTEM)
    assert removed == key
    assert store.keys.of(alice) == [] and store.keys.find(fingerprint) is None
    assert events[-1]["kind"] == "key.removed" and events[-1]["fingerprint"] == fingerprint


def test_title(store: Store, alice: str) -> None:
    assert store.keys.add(alice, random_ed25519_line(""), actor=SYSTEM).title == "ssh-ed25519 key"
    assert (
        store.keys.add(alice, random_ed25519_line("c"), actor=SYSTEM, title="laptop").title
        == "laptop"
    )
    with pytest.raises(BadRequest, match="title"):
        store.keys.add(alice, random_ed25519_line(), actor=SYSTEM, title="x" * 129)


def test_garbage_and_short_rsa_change_nothing(
    store: Store, alice: str, real_keys: RealKeys
) -> None:
    with pytest.raises(BadRequest, match="2048"):
        store.keys.add(alice, real_keys.public("rsa1024", "rsa", 1024), actor=SYSTEM)
    with pytest.raises(BadRequest, match="private key"):
        store.keys.add(alice, real_keys.make("ed", "ed25519").read_text(), actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.keys.add(alice, "garbage", actor=SYSTEM)
    assert store.keys.of(alice) == [] and store.audit.query(action="key") == []


def test_unknown_user(store: Store) -> None:
    with pytest.raises(NotFound, match="no user named 'ghost'"):
        store.keys.add("ghost", random_ed25519_line(), actor=SYSTEM)


def test_duplicate_key_names_owner_only_to_admins(
    store: Store, alice: str, bob: str, root: str
) -> None:
    line = random_ed25519_line()
    store.keys.add(alice, line, actor=alice)
    with pytest.raises(Conflict) as info:
        store.keys.add(bob, line, actor=bob)
    assert info.value.message == (
        "the key is already registered to another account; use a different key, or ask an admin"
    )
    assert "alice" not in info.value.message
    with pytest.raises(Conflict, match=r"another account: alice \(user-1\)"):
        store.keys.add(bob, line, actor=root)
    with pytest.raises(Conflict, match="alice"):
        store.keys.add(bob, line, actor=SYSTEM)
    with pytest.raises(Conflict, match="already registered to alice as"):
        store.keys.add(alice, line, actor=alice)
    # A disabled admin is no admin.
    store.users.disable(root, actor=SYSTEM)
    with pytest.raises(Conflict) as info:
        store.keys.add(bob, line, actor=root)
    assert "alice" not in info.value.message
    assert store.keys.of(bob) == []


def test_remove_own_key_only(store: Store, alice: str, bob: str) -> None:
    key = store.keys.add(alice, random_ed25519_line(), actor=alice)
    with pytest.raises(NotFound, match="bob has no key"):
        store.keys.remove(key.id, actor=bob, user=bob)
    store.keys.remove(key.fingerprint, actor=alice, user=alice)
    with pytest.raises(NotFound):
        store.keys.remove(key.id, actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.keys.get("whatever")


def test_disabled_users_keys_hidden_from_sshd(store: Store, alice: str, bob: str) -> None:
    ka = store.keys.add(alice, random_ed25519_line(), actor=SYSTEM)
    kb = store.keys.add(bob, random_ed25519_line(), actor=SYSTEM)
    store.users.disable(alice, actor=SYSTEM)
    assert store.keys.find(ka.fingerprint) is None
    assert store.keys.find(ka.fingerprint, include_disabled=True) == ka
    assert store.keys.all() == [kb]
    assert store.keys.all(include_disabled=True) == [ka, kb]


def test_touch_last_used(store: Store, alice: str) -> None:
    key = store.keys.add(alice, random_ed25519_line(), actor=SYSTEM)
    store.keys.touch(key.fingerprint)
    assert store.keys.get(key.id).last_used_at is not None
    store.keys.touch("SHA256:unknown")  # harmless


def test_find_by_fingerprint_uses_the_index(store: Store) -> None:
    from applikant.manager.store.keys import FIND_KEY_SQL

    steps = plan(store, FIND_KEY_SQL, ("SHA256:x",))
    assert uses_index(steps, "ssh_keys"), steps
    assert not scans_a_table(steps), steps


def test_update_title_keeps_the_key(
    store: Store, alice: str, bob: str, events: list[Event]
) -> None:
    key = store.keys.add(alice, random_ed25519_line(), actor=SYSTEM, title="old")
    events.clear()
    changed = store.keys.update(key.id, "  laptop  ", actor=alice, user=alice)
    assert changed.id == key.id and changed.fingerprint == key.fingerprint
    assert changed.title == "laptop" and store.keys.get(key.id).title == "laptop"
    entry = store.audit.query(action="key.update", limit=1)[0]
    assert entry.details["old_title"] == "old" and entry.details["title"] == "laptop"
    assert [e["kind"] for e in events] == ["key.updated"]
    # Someone else's key is not found; bad titles are refused; nothing changes.
    with pytest.raises(NotFound):
        store.keys.update(key.id, "mine now", actor=bob, user=bob)
    for bad in ("", "  ", "x" * 129, "a\nb"):
        with pytest.raises(BadRequest):
            store.keys.update(key.id, bad, actor=SYSTEM)
    with pytest.raises(NotFound):
        store.keys.update("key-99999", "x", actor=SYSTEM)
    assert store.keys.get(key.id).title == "laptop"
