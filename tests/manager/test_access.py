"""check_access: the decision matrix, its reasons, grants, and that every query is indexed."""

from __future__ import annotations

import pytest

from applikant.manager.access import ACCESS_SQL
from applikant.manager.errors import BadRequest, NotFound
from applikant.manager.store import SYSTEM, Store


@pytest.fixture
def world(store: Store, alice: str, bob: str, root: str) -> dict[str, str]:
    """alice owns alice/app; team (carol) owns team/tool; bob gets grants; dave gets nothing."""
    carol = store.add_user("carol", actor=SYSTEM).id
    dave = store.add_user("dave", actor=SYSTEM).id
    store.create_group("team", actor=SYSTEM)
    store.add_member("team", carol, actor=SYSTEM)
    store.create_group("readers", actor=SYSTEM)
    store.add_member("readers", dave, actor=SYSTEM)
    store.create_repo("alice/app", actor=SYSTEM)
    store.create_repo("team/tool", actor=SYSTEM)
    store.create_repo("alice/open", actor=SYSTEM, is_public=True)
    return {"alice": alice, "bob": bob, "root": root, "carol": carol, "dave": dave}


def level(store: Store, user: str | None, repo: str) -> str | None:
    for access in ("admin", "write", "read"):
        if store.check_access(user, repo, access).allowed:
            return access
    return None


def test_matrix(store: Store, world: dict[str, str]) -> None:
    store.grant("team/tool", world["bob"], "write", actor=SYSTEM)
    store.grant("alice/app", "readers", "read", actor=SYSTEM)
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
    store.grant("team/tool", "readers", "write", actor=SYSTEM)
    d = store.check_access(world["dave"], "team/tool.git", "write")
    assert d.allowed and d.level == "write"
    assert d.reason == f"{world['dave']} has write access to team/tool (via group readers)"
    d = store.check_access(world["carol"], "team/tool", "admin")
    assert not d.allowed and d.level == "write"
    assert d.reason == f"{world['carol']} has no admin access to team/tool"
    d = store.check_access(world["carol"], "team/tool", "write")
    assert d.reason.endswith("(member of owning group team)")
    assert store.check_access(world["alice"], "alice/app", "admin").reason.endswith("(owner)")
    assert store.check_access(world["root"], "team/tool", "admin").reason.endswith("(site admin)")
    d = store.check_access(None, "alice/open", "read")
    assert d.allowed and d.reason == "anonymous has read access to alice/open (public repository)"
    assert (
        store.check_access(None, "alice/open", "write").reason
        == "anonymous has no write access to alice/open"
    )


def test_private_and_missing_look_the_same(store: Store, world: dict[str, str]) -> None:
    hidden = store.check_access(world["bob"], "alice/app", "read")
    missing = store.check_access(world["bob"], "alice/nothing", "read")
    assert not hidden.allowed and not missing.allowed and hidden.level is None
    assert hidden.reason == "repository alice/app does not exist or you have no read access"
    assert missing.reason == "repository alice/nothing does not exist or you have no read access"
    assert store.check_access(None, "alice/app", "write").reason == (
        "repository alice/app does not exist or you have no write access"
    )
    # Site admins are told plainly.
    assert (
        store.check_access(world["root"], "alice/nothing", "read").reason
        == "no repository alice/nothing"
    )


def test_disabled_and_unknown_users(store: Store, world: dict[str, str]) -> None:
    store.disable_user(world["alice"], actor=SYSTEM)
    d = store.check_access(world["alice"], "alice/open", "read")
    assert not d.allowed and d.reason == f"account {world['alice']} is disabled"
    store.disable_user(world["root"], actor=SYSTEM)
    assert not store.check_access(world["root"], "alice/app", "read").allowed
    d = store.check_access("user-999", "alice/open", "read")
    assert not d.allowed and d.reason == "no account user-999"
    # A login is accepted too, and named by its id in reasons.
    d = store.check_access("carol", "team/tool", "write")
    assert d.allowed and d.reason.startswith(f"{world['carol']} has write")
    assert not store.check_access("nobody", "alice/open", "read").allowed


def test_bad_repo_paths_are_denials(store: Store, world: dict[str, str]) -> None:
    d = store.check_access(world["alice"], "../etc/passwd", "read")
    assert not d.allowed and "owner/name" in d.reason
    with pytest.raises(BadRequest, match="access level"):
        store.check_access(world["alice"], "alice/app", "delete")


def test_grants(store: Store, world: dict[str, str]) -> None:
    grant = store.grant("alice/app", "bob", "read", actor=world["alice"])
    assert (grant.grantee, grant.grantee_kind, grant.level) == ("bob", "user", "read")
    store.grant("alice/app", world["bob"], "admin", actor=SYSTEM)  # upsert, by id
    store.grant("alice/app", "group-7", "write", actor=SYSTEM)  # readers, by id
    store.grant("alice/app", "team", "read", actor=SYSTEM)
    assert [(g.grantee, g.level) for g in store.list_grants("alice/app")] == [
        ("bob", "admin"),
        ("readers", "write"),
        ("team", "read"),
    ]
    assert store.check_access(world["bob"], "alice/app", "admin").reason.endswith("(direct grant)")
    (entry, *_) = store.query_audit(action="perm.grant", limit=3)
    assert entry.details["grantee"] == "team" and entry.details["previous"] is None
    store.revoke("alice/app", "bob", actor=SYSTEM)
    assert not store.check_access(world["bob"], "alice/app", "read").allowed
    with pytest.raises(NotFound, match="user bob has no grant on alice/app"):
        store.revoke("alice/app", "bob", actor=SYSTEM)
    with pytest.raises(NotFound, match="no user or group named 'ghost'"):
        store.grant("alice/app", "ghost", "read", actor=SYSTEM)
    with pytest.raises(NotFound):
        store.grant("alice/ghost", "bob", "read", actor=SYSTEM)
    with pytest.raises(BadRequest):
        store.grant("alice/app", "bob", "owner", actor=SYSTEM)


def test_highest_level_wins(store: Store, world: dict[str, str]) -> None:
    store.grant("team/tool", world["carol"], "read", actor=SYSTEM)  # lower than group ownership
    assert level(store, world["carol"], "team/tool") == "write"
    store.grant("team/tool", "team", "admin", actor=SYSTEM)
    assert level(store, world["carol"], "team/tool") == "admin"


@pytest.mark.parametrize("name", sorted(ACCESS_SQL))
def test_every_access_query_is_indexed(store: Store, world: dict[str, str], name: str) -> None:
    sql = ACCESS_SQL[name]
    params = (1,) * sql.count("?")
    plan = [row["detail"] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    assert plan, name
    assert not any(d.startswith("SCAN") for d in plan), (name, plan)
    # A temporary B-tree may sort the user's few matching groups; that is bounded
    # by the user's memberships, not by the size of the store.
    assert all(d.startswith("SEARCH") or d == "USE TEMP B-TREE FOR ORDER BY" for d in plan), plan
