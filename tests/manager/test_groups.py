"""Groups: one namespace with users, members, and deletion rules."""

from __future__ import annotations

import pytest

from applikant.manager.base import Event
from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.store import SYSTEM, Store


def test_create_members_delete(store: Store, alice: str, bob: str, events: list[Event]) -> None:
    events.clear()
    group = store.create_group("devs", actor=SYSTEM, description="the developers")
    assert (group.id, group.name, group.members) == ("group-3", "devs", [])
    assert store.add_member("devs", "bob", actor=SYSTEM).members == ["bob"]
    assert store.add_member("DEVS", alice, actor=SYSTEM).members == ["alice", "bob"]
    assert store.groups_of(alice) == ["devs"]
    assert store.list_groups() == [store.get_group("devs")]
    with pytest.raises(Conflict, match="already a member"):
        store.add_member("devs", "bob", actor=SYSTEM)
    assert store.remove_member("devs", "bob", actor=SYSTEM).members == ["alice"]
    with pytest.raises(NotFound, match="not a member"):
        store.remove_member("devs", "bob", actor=SYSTEM)
    store.delete_group("devs", actor=SYSTEM)
    assert store.list_groups() == [] and store.groups_of(alice) == []
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
        store.create_group("Alice", actor=SYSTEM)
    store.create_group("team", actor=SYSTEM)
    with pytest.raises(Conflict, match="taken by the group"):
        store.create_group("TEAM", actor=SYSTEM)


@pytest.mark.parametrize("name", ["", "..", "a/b", ".x", "-x", "group-1", "x" * 65, "\u00e9"])
def test_bad_group_names(store: Store, name: str) -> None:
    with pytest.raises(BadRequest):
        store.create_group(name, actor=SYSTEM)
    assert store.list_groups() == []


def test_unknowns(store: Store, alice: str) -> None:
    with pytest.raises(NotFound, match="no group named 'ghosts'"):
        store.add_member("ghosts", alice, actor=SYSTEM)
    store.create_group("devs", actor=SYSTEM)
    with pytest.raises(NotFound, match="no user named 'ghost'"):
        store.add_member("devs", "ghost", actor=SYSTEM)
    with pytest.raises(NotFound):
        store.get_group("alice")  # a user, not a group
    with pytest.raises(NotFound):
        store.delete_group("nope", actor=SYSTEM)


def test_group_owning_repos_cannot_be_deleted(store: Store, alice: str) -> None:
    store.create_group("devs", actor=SYSTEM)
    store.create_repo("devs/app", actor=SYSTEM)
    with pytest.raises(Conflict, match="owns 1 repositories"):
        store.delete_group("devs", actor=SYSTEM)
    store.rename_repo("devs/app", "alice/app", actor=SYSTEM)
    store.delete_group("devs", actor=SYSTEM)


def test_deleting_a_group_drops_its_grants(store: Store, alice: str) -> None:
    store.create_repo("alice/app", actor=SYSTEM)
    store.create_group("devs", actor=SYSTEM)
    store.grant("alice/app", "devs", "write", actor=SYSTEM)
    store.delete_group("devs", actor=SYSTEM)
    assert store.list_grants("alice/app") == []
