"""Repositories: owners, names, visibility, renames and deletion."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Event, Store

FAST = Passwords(fast=True)


def test_create_get_update(store: Store, alice: str, events: list[Event]) -> None:
    events.clear()
    repo = store.repos.create("alice/project.git", actor=alice, description="a thing")
    assert (repo.id, repo.full_name, repo.owner_kind) == ("repo-1", "alice/project", "user")
    assert (repo.is_public, repo.default_branch, repo.description) == (False, "main", "a thing")
    assert store.repos.get("alice/project") == repo == store.repos.get("/ALICE/Project.git")
    assert events == [{"kind": "repo.created", "repo": "alice/project", "id": "repo-1"}]
    repo = store.repos.update("alice/project", actor=alice, is_public=True, default_branch="trunk")
    assert repo.is_public and repo.default_branch == "trunk" and repo.description == "a thing"
    (entry,) = store.audit.query(action="repo.update")
    assert entry.details == {"is_public": True, "default_branch": "trunk"}
    assert entry.repo == "alice/project" and entry.actor == alice


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("alice", BadRequest),
        ("alice/../x", BadRequest),
        ("alice/.x", BadRequest),
        ("alice/-x", BadRequest),
        ("alice/" + "x" * 65, BadRequest),
        ("alice/\u00e9", BadRequest),
        ("alice/a/b", BadRequest),
        ("ghost/x", NotFound),
    ],
)
def test_bad_create(store: Store, alice: str, path: str, error: type) -> None:
    with pytest.raises(error):
        store.repos.create(path, actor=SYSTEM)
    assert store.repos.all() == [] and store.audit.query(action="repo") == []


def test_bad_fields(store: Store, alice: str) -> None:
    with pytest.raises(BadRequest):
        store.repos.create("alice/x", actor=SYSTEM, default_branch="a..b")
    with pytest.raises(BadRequest):
        store.repos.create("alice/x", actor=SYSTEM, is_public="yes")  # type: ignore[arg-type]
    store.repos.create("alice/x", actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.repos.update("alice/x", actor=SYSTEM, description="x" * 2000)
    with pytest.raises(NotFound, match="no repository alice/y"):
        store.repos.update("alice/y", actor=SYSTEM, description="d")


def test_duplicate_case_insensitive(store: Store, alice: str) -> None:
    store.repos.create("alice/App", actor=SYSTEM)
    with pytest.raises(Conflict, match="alice/App already exists"):
        store.repos.create("ALICE/app.git", actor=SYSTEM)


def test_group_owned(store: Store) -> None:
    store.groups.create("team", actor=SYSTEM)
    assert store.repos.create("team/app", actor=SYSTEM).owner_kind == "group"


def test_rename_and_move(store: Store, alice: str, events: list[Event]) -> None:
    store.groups.create("team", actor=SYSTEM)
    store.repos.create("alice/app", actor=SYSTEM)
    store.access.grant("alice/app", "team", "read", actor=SYSTEM)
    store.branches.protect("alice/app", "main", actor=SYSTEM)
    events.clear()
    moved = store.repos.rename("alice/app", "team/service.git", actor=SYSTEM)
    assert moved.full_name == "team/service" and moved.id == "repo-1"
    assert events == [
        {"kind": "repo.renamed", "id": "repo-1", "old": "alice/app", "new": "team/service"}
    ]
    assert [g.grantee for g in store.access.grants("team/service")] == ["team"]
    assert [p.pattern for p in store.branches.rules("team/service")] == ["main"]
    with pytest.raises(NotFound):
        store.repos.get("alice/app")
    assert store.repos.rename("team/service", "team/Service", actor=SYSTEM).name == "Service"
    store.repos.create("alice/other", actor=SYSTEM)
    with pytest.raises(Conflict):
        store.repos.rename("alice/other", "team/service", actor=SYSTEM)
    with pytest.raises(NotFound, match="no user or group named 'ghost'"):
        store.repos.rename("alice/other", "ghost/x", actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.repos.rename("alice/other", "alice/../x", actor=SYSTEM)


def test_delete(store: Store, alice: str, bob: str, events: list[Event]) -> None:
    store.repos.create("alice/app", actor=SYSTEM)
    store.access.grant("alice/app", bob, "write", actor=SYSTEM)
    events.clear()
    assert store.repos.delete("alice/app.git", actor=SYSTEM).full_name == "alice/app"
    assert events == [{"kind": "repo.deleted", "repo": "alice/app", "id": "repo-1"}]
    assert store.repos.all() == []
    # The grant went with it: a new repository of the same name starts clean.
    store.repos.create("alice/app", actor=SYSTEM)
    assert store.access.grants("alice/app") == []
    with pytest.raises(NotFound):
        store.repos.delete("alice/nope", actor=SYSTEM)


def test_list_visibility(store: Store, alice: str, bob: str, root: str) -> None:
    carol = store.users.add("carol", actor=SYSTEM).id
    store.groups.create("team", actor=SYSTEM)
    store.groups.add_member("team", carol, actor=SYSTEM)
    store.repos.create("alice/private", actor=SYSTEM)
    store.repos.create("alice/public", actor=SYSTEM, is_public=True)
    store.repos.create("team/tool", actor=SYSTEM)
    store.repos.create("bob/granted", actor=SYSTEM)
    store.repos.create("bob/via-group", actor=SYSTEM)
    store.access.grant("bob/granted", alice, "read", actor=SYSTEM)
    store.access.grant("bob/via-group", "team", "read", actor=SYSTEM)

    def names(**kw: object) -> list[str]:
        return [r.full_name for r in store.repos.all(**kw)]  # type: ignore[arg-type]

    # The site's list is by id (creation), one owner's by name.
    assert names() == ["alice/private", "alice/public", "team/tool", "bob/granted", "bob/via-group"]
    assert names(owner="alice") == ["alice/private", "alice/public"]
    assert names(owner="bob", visible_to=alice) == ["bob/granted"]
    assert names(owner="team", visible_to=carol) == ["team/tool"]
    assert names(owner="nobody") == []
    assert names(public_only=True) == ["alice/public"]
    assert names(visible_to=alice) == ["alice/private", "alice/public", "bob/granted"]
    assert names(visible_to=carol) == ["alice/public", "team/tool", "bob/via-group"]
    assert names(visible_to=root) == names()
    store.users.disable(carol, actor=SYSTEM)
    assert names(visible_to=carol) == []


def test_listing_dicts_are_the_models_json(tmp_path: Path) -> None:
    """A page's dicts are what the service sends; they must equal the models'
    JSON exactly (keys, order, values), whatever the times' fractions."""
    moments = iter(
        [
            datetime(2024, 5, 1, 12, 0, 0, 0, tzinfo=UTC),
            datetime(2024, 5, 1, 12, 0, 1, 120000, tzinfo=UTC),
            datetime(2024, 5, 1, 12, 0, 2, 5, tzinfo=UTC),
        ]
        * 10
    )
    with Store(str(tmp_path / "am.sqlite3"), passwords=FAST, clock=lambda: next(moments)) as s:
        uid = s.users.add("alice", actor=SYSTEM).id
        s.groups.create("Team", actor=SYSTEM)
        s.repos.create("alice/One", actor=SYSTEM, description="d\nmore", is_public=True)
        s.repos.create("Team/two", actor=SYSTEM, default_branch="trunk")
        s.repos.create("alice/three", actor=SYSTEM)
        for kw in ({}, {"owner": "alice"}, {"public_only": True}, {"visible_to": uid}):
            as_json = s.repos.page(**kw).items  # type: ignore[arg-type]
            models = [s.repos.get(d["full_name"]).model_dump(mode="json") for d in as_json]
            assert as_json == models and as_json
            assert [list(d) for d in as_json] == [list(d) for d in models]
        assert "2024-05-01T12:00:00Z" in {r["created_at"] for r in s.repos.page().items}
