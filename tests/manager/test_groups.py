"""Groups: one namespace with users, members, and deletion rules."""

from __future__ import annotations

import pytest

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.store import SYSTEM, Event, Store


def test_create_members_delete(store: Store, alice: str, bob: str, events: list[Event]) -> None:
    events.clear()
    group = store.groups.create("devs", actor=SYSTEM, description="the developers")
    assert (group.id, group.name, group.members) == ("group-3", "devs", [])
    assert store.groups.add_member("devs", "bob", actor=SYSTEM).members == ["bob"]
    assert store.groups.add_member("DEVS", alice, actor=SYSTEM).members == ["alice", "bob"]
    assert store.groups.of(alice) == ["devs"]
    assert store.groups.all() == [store.groups.get("devs")]
    with pytest.raises(Conflict, match="already a member"):
        store.groups.add_member("devs", "bob", actor=SYSTEM)
    assert store.groups.remove_member("devs", "bob", actor=SYSTEM).members == ["alice"]
    with pytest.raises(NotFound, match="not a member"):
        store.groups.remove_member("devs", "bob", actor=SYSTEM)
    store.groups.delete("devs", actor=SYSTEM)
    assert store.groups.all() == [] and store.groups.of(alice) == []
    kinds = [e["kind"] for e in events]
    assert kinds == [
        "group.created",
        "group.member_added",
        "group.member_added",
        "group.member_removed",
        "group.deleted",
    ]


def test_group_cannot_take_a_login(store: Store, alice: str) -> None:
    with pytest.raises(Conflict, match="taken by the user 'alice'"):
        store.groups.create("Alice", actor=SYSTEM)
    store.groups.create("team", actor=SYSTEM)
    with pytest.raises(Conflict, match="taken by the group"):
        store.groups.create("TEAM", actor=SYSTEM)


@pytest.mark.parametrize("name", ["", "..", "a/b", ".x", "-x", "group-1", "x" * 65, "\u00e9"])
def test_bad_group_names(store: Store, name: str) -> None:
    with pytest.raises(BadRequest):
        store.groups.create(name, actor=SYSTEM)
    assert store.groups.all() == []


def test_unknowns(store: Store, alice: str) -> None:
    with pytest.raises(NotFound, match="no group named 'ghosts'"):
        store.groups.add_member("ghosts", alice, actor=SYSTEM)
    store.groups.create("devs", actor=SYSTEM)
    with pytest.raises(NotFound, match="no user named 'ghost'"):
        store.groups.add_member("devs", "ghost", actor=SYSTEM)
    with pytest.raises(NotFound):
        store.groups.get("alice")  # a user, not a group
    with pytest.raises(NotFound):
        store.groups.delete("nope", actor=SYSTEM)


def test_group_owning_repos_cannot_be_deleted(store: Store, alice: str) -> None:
    store.groups.create("devs", actor=SYSTEM)
    store.repos.create("devs/app", actor=SYSTEM)
    with pytest.raises(Conflict, match="owns 1 repositories"):
        store.groups.delete("devs", actor=SYSTEM)
    store.repos.rename("devs/app", "alice/app", actor=SYSTEM)
    store.groups.delete("devs", actor=SYSTEM)


def test_deleting_a_group_drops_its_grants(store: Store, alice: str) -> None:
    store.repos.create("alice/app", actor=SYSTEM)
    store.groups.create("devs", actor=SYSTEM)
    store.access.grant("alice/app", "devs", "write", actor=SYSTEM)
    store.groups.delete("devs", actor=SYSTEM)
    assert store.access.grants("alice/app") == []
