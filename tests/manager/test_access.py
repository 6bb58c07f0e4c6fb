"""check_access: the decision matrix, its reasons, grants, and that every query is indexed."""

from __future__ import annotations

import pytest

from applikant.manager.errors import BadRequest, NotFound
from applikant.manager.store import SYSTEM, Store
from applikant.manager.store.access import ACCESS_SQL
from tests.manager.helpers import is_postgres, plan, scans_a_table


@pytest.fixture
def world(store: Store, alice: str, bob: str, root: str) -> dict[str, str]:
    """alice owns alice/app; team (carol) owns team/tool; bob gets grants; dave gets nothing."""
    carol = store.users.add("carol", actor=SYSTEM).id
    dave = store.users.add("dave", actor=SYSTEM).id
    store.groups.create("team", actor=SYSTEM)
    store.groups.add_member("team", carol, actor=SYSTEM)
    store.groups.create("readers", actor=SYSTEM)
    store.groups.add_member("readers", dave, actor=SYSTEM)
    store.repos.create("alice/app", actor=SYSTEM)
    store.repos.create("team/tool", actor=SYSTEM)
    store.repos.create("alice/open", actor=SYSTEM, is_public=True)
    return {"alice": alice, "bob": bob, "root": root, "carol": carol, "dave": dave}


def level(store: Store, user: str | None, repo: str) -> str | None:
    for access in ("admin", "write", "read"):
        if store.access.check(user, repo, access).allowed:
            return access
    return None


def test_matrix(store: Store, world: dict[str, str]) -> None:
    store.access.grant("team/tool", world["bob"], "write", actor=SYSTEM)
    store.access.grant("alice/app", "readers", "read", actor=SYSTEM)
    expected = {
        # user:           alice/app  team/tool  alice/open
        "alice": ("admin", None, "admin"),
        "root": ("admin", "admin", "admin"),
        "carol": (None, "write", "read"),
        "bob": (None, "write", "read"),
        "dave": ("read", None, "read"),
        None: (None, None, "read"),
    }
    for who, levels in expected.items():
        user = world[who] if who is not None else None
        got = tuple(level(store, user, repo) for repo in ("alice/app", "team/tool", "alice/open"))
        assert got == levels, who


def test_reasons(store: Store, world: dict[str, str]) -> None:
    store.access.grant("team/tool", "readers", "write", actor=SYSTEM)
    d = store.access.check(world["dave"], "team/tool.git", "write")
    assert d.allowed and d.level == "write"
    assert d.reason == "dave has write access to team/tool (via group readers)"
    d = store.access.check(world["carol"], "team/tool", "admin")
    assert not d.allowed and d.level == "write"
    assert d.reason == "carol has no admin access to team/tool"  # by login, not user-N
    d = store.access.check(world["carol"], "team/tool", "write")
    assert d.reason.endswith("(member of owning group team)")
    assert store.access.check(world["alice"], "alice/app", "admin").reason.endswith("(owner)")
    assert store.access.check(world["root"], "team/tool", "admin").reason.endswith("(site admin)")
    d = store.access.check(None, "alice/open", "read")
    assert d.allowed and d.reason == "anonymous has read access to alice/open (public repository)"
    assert (
        store.access.check(None, "alice/open", "write").reason
        == "anonymous has no write access to alice/open"
    )


def test_private_and_missing_look_the_same(store: Store, world: dict[str, str]) -> None:
    hidden = store.access.check(world["bob"], "alice/app", "read")
    missing = store.access.check(world["bob"], "alice/nothing", "read")
    assert not hidden.allowed and not missing.allowed and hidden.level is None
    assert hidden.reason == "repository alice/app does not exist or you have no read access"
    assert missing.reason == "repository alice/nothing does not exist or you have no read access"
    assert store.access.check(None, "alice/app", "write").reason == (
        "repository alice/app does not exist or you have no write access"
    )
    # Site admins are told plainly.
    assert (
        store.access.check(world["root"], "alice/nothing", "read").reason
        == "no repository alice/nothing"
    )


def test_disabled_and_unknown_users(store: Store, world: dict[str, str]) -> None:
    store.users.disable(world["alice"], actor=SYSTEM)
    d = store.access.check(world["alice"], "alice/open", "read")
    assert not d.allowed and d.reason == "account alice is disabled"
    store.users.disable(world["root"], actor=SYSTEM)
    assert not store.access.check(world["root"], "alice/app", "read").allowed
    d = store.access.check("user-999", "alice/open", "read")
    assert not d.allowed and d.reason == "no account user-999"
    # A login is accepted too; reasons name people by login either way.
    d = store.access.check("carol", "team/tool", "write")
    assert d.allowed and d.reason.startswith("carol has write")
    assert not store.access.check("nobody", "alice/open", "read").allowed


def test_bad_repo_paths_are_denials(store: Store, world: dict[str, str]) -> None:
    d = store.access.check(world["alice"], "../etc/passwd", "read")
    assert not d.allowed and "owner/name" in d.reason
    with pytest.raises(BadRequest, match="access level"):
        store.access.check(world["alice"], "alice/app", "delete")


def test_grants(store: Store, world: dict[str, str]) -> None:
    grant = store.access.grant("alice/app", "bob", "read", actor=world["alice"])
    assert (grant.grantee, grant.grantee_kind, grant.level) == ("bob", "user", "read")
    store.access.grant("alice/app", world["bob"], "admin", actor=SYSTEM)  # upsert, by id
    store.access.grant("alice/app", "group-7", "write", actor=SYSTEM)  # readers, by id
    store.access.grant("alice/app", "team", "read", actor=SYSTEM)
    assert [(g.grantee, g.level) for g in store.access.grants("alice/app")] == [
        ("bob", "admin"),
        ("readers", "write"),
        ("team", "read"),
    ]
    assert store.access.check(world["bob"], "alice/app", "admin").reason.endswith("(direct grant)")
    (entry, *_) = store.audit.query(action="perm.grant", limit=3)
    assert entry.details["grantee"] == "team" and entry.details["previous"] is None
    store.access.revoke("alice/app", "bob", actor=SYSTEM)
    assert not store.access.check(world["bob"], "alice/app", "read").allowed
    with pytest.raises(NotFound, match="user bob has no grant on alice/app"):
        store.access.revoke("alice/app", "bob", actor=SYSTEM)
    with pytest.raises(NotFound, match="no user or group named 'ghost'"):
        store.access.grant("alice/app", "ghost", "read", actor=SYSTEM)
    with pytest.raises(NotFound):
        store.access.grant("alice/ghost", "bob", "read", actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.access.grant("alice/app", "bob", "owner", actor=SYSTEM)


def test_highest_level_wins(store: Store, world: dict[str, str]) -> None:
    store.access.grant(
        "team/tool", world["carol"], "read", actor=SYSTEM
    )  # lower than group ownership
    assert level(store, world["carol"], "team/tool") == "write"
    store.access.grant("team/tool", "team", "admin", actor=SYSTEM)
    assert level(store, world["carol"], "team/tool") == "admin"


@pytest.mark.parametrize("name", sorted(ACCESS_SQL))
def test_every_access_query_is_indexed(store: Store, world: dict[str, str], name: str) -> None:
    sql = ACCESS_SQL[name]
    params = ("1",) * sql.count("?")  # text: it fits the name columns and the ids
    steps = plan(store, sql, params)
    assert steps, name
    assert not scans_a_table(steps), (name, steps)
    if not is_postgres(store):
        # A temporary B-tree may sort the user's few matching groups; that is
        # bounded by the user's memberships, not by the size of the store.
        assert all(d.startswith("SEARCH") or d == "USE TEMP B-TREE FOR ORDER BY" for d in steps)
