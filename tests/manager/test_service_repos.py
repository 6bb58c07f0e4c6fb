"""am_repo_db through a real am process: repositories, grants, protection,
access decisions, audit queries, and who may do what."""

from __future__ import annotations

from typing import Any

import pytest

from harness.am import Am, add_user
from tests.manager.test_service_users import snapshot


@pytest.fixture(scope="module")
def people(am: Am) -> dict[str, str]:
    """owner (alice), a member of team `crew` (bob), an outsider (carol), an admin."""
    ids = {name: add_user(am, name)["id"] for name in ("alice", "bob", "carol")}
    ids["root"] = add_user(am, "root", is_admin=True)["id"]
    am.users("create_group", actor="system", name="crew")
    am.users("add_member", actor="system", group="crew", user="bob")
    return ids


@pytest.fixture(scope="module")
def dup(am: Am, people: dict[str, str]) -> dict[str, Any]:
    """The repository `alice/dup`, made once for the bad-input cases."""
    return am.repos("create_repo", actor="system", path="alice/dup")


def test_repo_lifecycle(am: Am, people: dict[str, str]) -> None:
    repo = am.repos(
        "create_repo",
        actor="system",
        path="alice/life.git",
        description="Life",
        is_public=False,
        default_branch="trunk",
    )
    assert repo["full_name"] == "alice/life" and repo["default_branch"] == "trunk"
    assert am.repos("get_repo", repo="alice/life")["id"] == repo["id"]
    assert "alice/life" in [r["full_name"] for r in am.repos("list_repos")["items"]]
    assert [r["full_name"] for r in am.repos("list_repos", owner="alice")["items"]] == [
        "alice/life"
    ]

    updated = am.repos(
        "update_repo", actor="system", repo="alice/life", is_public=True, description="Now public"
    )
    assert updated["is_public"] and updated["description"] == "Now public"
    grant = am.repos("grant", actor="system", repo="alice/life", grantee="crew", level="write")
    assert grant == {
        "repo": "alice/life",
        "grantee": "crew",
        "grantee_kind": "group",
        "level": "write",
    }
    assert am.repos("list_grants", repo="alice/life") == [grant]
    rule = am.repos(
        "protect_branch", actor="system", repo="alice/life", pattern="release/*", admins_only=True
    )
    assert rule["pattern"] == "release/*" and rule["admins_only"]
    assert [r["pattern"] for r in am.repos("list_protected", repo="alice/life")] == ["release/*"]

    renamed = am.repos("rename_repo", actor="system", repo="alice/life", new_path="crew/life")
    assert renamed["full_name"] == "crew/life" and renamed["id"] == repo["id"]
    assert am.repos("list_grants", repo="crew/life")[0]["grantee"] == "crew"
    am.repos("unprotect_branch", actor="system", repo="crew/life", pattern="release/*")
    am.repos("revoke", actor="system", repo="crew/life", grantee="crew")
    assert am.repos("delete_repo", actor="system", repo="crew/life")["id"] == repo["id"]
    assert am.error("am_repo_db", "get_repo", {"repo": "crew/life"}).kind == "not_found"
    actions = [e["action"] for e in am.repos("query_audit", query={"repo": "crew/life"})["items"]]
    assert actions == ["repo.delete", "perm.revoke", "branch.unprotect", "repo.rename"]


def test_check_access_and_list_readable(am: Am, people: dict[str, str]) -> None:
    am.repos("create_repo", actor="system", path="alice/secret")
    am.repos("create_repo", actor="system", path="crew/tool")
    am.repos("create_repo", actor="system", path="alice/open", is_public=True)

    def check(user: str | None, repo: str, access: str) -> dict[str, Any]:
        return am.repos("check_access", user=user, repo=repo, access=access)

    assert check(people["alice"], "alice/secret", "write") == {
        "allowed": True,
        "level": "admin",
        "reason": "alice has admin access to alice/secret (owner)",  # by login
        "repo": "alice/secret",
    }
    assert check(people["alice"], "ALICE/Secret", "read")["repo"] == "alice/secret"  # canonical
    assert check(people["bob"], "crew/tool", "write")["allowed"]
    assert not check(people["bob"], "crew/tool", "admin")["allowed"]
    denied = check(people["carol"], "alice/secret", "read")
    assert denied["allowed"] is False and denied["level"] is None
    # The same words for a hidden repository as for a missing one.
    missing = check(people["carol"], "alice/nothing", "read")
    assert missing["reason"].replace("nothing", "secret") == denied["reason"]
    assert check(None, "alice/open", "read")["allowed"]
    assert not check(None, "alice/open", "write")["allowed"]
    assert check(people["root"], "crew/tool", "admin")["allowed"]
    assert not check("user-999999", "alice/open", "read")["allowed"]

    readable = {
        r["repo"]: r["level"] for r in am.repos("list_readable", user=people["bob"])["items"]
    }
    assert readable.get("crew/tool") == "write" and readable.get("alice/open") == "read"
    assert "alice/secret" not in readable
    anonymous = {r["repo"] for r in am.repos("list_readable", user=None)["items"]}
    assert "alice/open" in anonymous and "crew/tool" not in anonymous
    # A user asks about themself only.
    assert am.repos(
        "check_access", actor=people["bob"], user=people["bob"], repo="crew/tool", access="read"
    )["allowed"]
    err = am.error(
        "am_repo_db",
        "check_access",
        {"actor": people["bob"], "user": people["alice"], "repo": "alice/secret", "access": "read"},
    )
    assert err.kind == "forbidden"


def test_users_manage_their_own_repositories(am: Am, people: dict[str, str]) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    mine = am.repos("create_repo", actor=alice, path="alice/own")
    assert mine["owner"] == "alice"
    assert am.repos("create_repo", actor=bob, path="crew/bobs")["owner"] == "crew"
    am.repos("grant", actor=alice, repo="alice/own", grantee="carol", level="read")
    am.repos("protect_branch", actor=alice, repo="alice/own", pattern="main")
    seen = {r["full_name"] for r in am.repos("list_repos", actor=carol, owner="alice")["items"]}
    assert "alice/own" in seen and "alice/secret" not in seen

    before = snapshot(am)
    refused = [
        (bob, "create_repo", {"path": "alice/intruder"}, "forbidden"),
        (carol, "create_repo", {"path": "crew/notmine"}, "forbidden"),
        (carol, "update_repo", {"repo": "alice/own", "description": "x"}, "forbidden"),
        (carol, "grant", {"repo": "alice/own", "grantee": "carol", "level": "admin"}, "forbidden"),
        (carol, "delete_repo", {"repo": "alice/own"}, "forbidden"),
        (carol, "list_grants", {"repo": "alice/own"}, "forbidden"),
        (bob, "get_repo", {"repo": "alice/own"}, "not_found"),
        (bob, "delete_repo", {"repo": "alice/own"}, "not_found"),
        (bob, "list_protected", {"repo": "alice/own"}, "not_found"),
        (alice, "rename_repo", {"repo": "alice/own", "new_path": "crew/stolen"}, "forbidden"),
        (bob, "query_audit", {"query": {}}, "forbidden"),
        (carol, "query_audit", {"query": {"repo": "alice/own"}}, "forbidden"),
        (bob, "list_readable", {"user": alice}, "forbidden"),
    ]
    for actor, method, args, kind in refused:
        err = am.error("am_repo_db", method, {**args, "actor": actor})
        assert err.kind == kind, (method, args, err)
    assert snapshot(am) == before
    # Bob cannot tell alice's private repository from a missing one.
    hidden = am.error("am_repo_db", "get_repo", {"actor": bob, "repo": "alice/own"})
    missing = am.error("am_repo_db", "get_repo", {"actor": bob, "repo": "alice/nope"})
    assert hidden.message.replace("own", "X") == missing.message.replace("nope", "X")
    assert am.repos("query_audit", actor=alice, query={"repo": "alice/own"})["items"]


BAD_REPO_CALLS = [
    ("create_repo", {"actor": "system", "path": "alice/.hidden"}, "bad_request"),
    ("create_repo", {"actor": "system", "path": "alice/-flag"}, "bad_request"),
    ("create_repo", {"actor": "system", "path": "alice/a..b"}, "bad_request"),
    ("create_repo", {"actor": "system", "path": "alice/" + "x" * 200}, "bad_request"),
    ("create_repo", {"actor": "system", "path": "alice"}, "bad_request"),
    ("create_repo", {"actor": "system", "path": "alice/x/y"}, "bad_request"),
    ("create_repo", {"actor": "system", "path": "ghost/repo"}, "not_found"),
    ("create_repo", {"actor": "system", "path": "alice/ok", "is_public": "true"}, "bad_request"),
    (
        "create_repo",
        {"actor": "system", "path": "alice/ok", "default_branch": "a b"},
        "bad_request",
    ),
    ("create_repo", {"actor": "system", "path": "alice/dup"}, "conflict"),
    ("create_repo", {"actor": "system"}, "bad_request"),
    (
        "grant",
        {"actor": "system", "repo": "alice/dup", "grantee": "bob", "level": "owner"},
        "bad_request",
    ),
    (
        "grant",
        {"actor": "system", "repo": "alice/none", "grantee": "bob", "level": "read"},
        "not_found",
    ),
    (
        "grant",
        {"actor": "system", "repo": "alice/dup", "grantee": "ghost", "level": "read"},
        "not_found",
    ),
    ("revoke", {"actor": "system", "repo": "alice/dup", "grantee": "bob"}, "not_found"),
    (
        "protect_branch",
        {"actor": "system", "repo": "alice/dup", "pattern": "bad pattern"},
        "bad_request",
    ),
    ("unprotect_branch", {"actor": "system", "repo": "alice/dup", "pattern": "main"}, "not_found"),
    (
        "rename_repo",
        {"actor": "system", "repo": "alice/dup", "new_path": "alice/dup2/x"},
        "bad_request",
    ),
    ("check_access", {"user": "user-1", "repo": "alice/dup", "access": "delete"}, "bad_request"),
    ("check_access", {"user": 1, "repo": "alice/dup", "access": "read"}, "bad_request"),
    ("check_access", {"repo": "alice/dup", "access": "read"}, "bad_request"),
    ("query_audit", {"query": {"limit": 0}}, "bad_request"),
    ("query_audit", {"query": {"since": "yesterday"}}, "bad_request"),
    ("query_audit", {"query": {"action": "DROP TABLE"}}, "bad_request"),
    ("recent_pushes", {"limit": "ten"}, "bad_request"),
]


@pytest.mark.parametrize(
    "method,args,kind", BAD_REPO_CALLS, ids=[f"{m}-{i}" for i, (m, *_) in enumerate(BAD_REPO_CALLS)]
)
def test_bad_repo_input_changes_nothing(
    am: Am, dup: dict[str, Any], method: str, args: Any, kind: str
) -> None:
    before = snapshot(am)
    err = am.error("am_repo_db", method, args)
    assert err.kind == kind, err
    assert snapshot(am) == before


def test_counts_and_recent_pushes(am: Am, people: dict[str, str]) -> None:
    counts = am.repos("counts")
    assert (
        set(counts)
        == {
            "users",
            "repos",
            "keys",
            "groups",
            "pushes",
            "push_denials",
            "access_denials",
            "capped",
        }
        and counts["users"] >= 4
    )
    assert isinstance(am.repos("recent_pushes", limit=5), list)
    # Without the pushes (the dashboard's call): null, for an admin and a user.
    for actor in ("system", people["bob"]):
        lean = am.repos("counts", actor=actor, pushes=False)
        full = am.repos("counts", actor=actor)
        assert lean["pushes"] is None and isinstance(full["pushes"], int), (lean, full)
        assert {**lean, "pushes": 0} == {**full, "pushes": 0}
    err = am.error("am_repo_db", "counts", {"actor": "system", "pushes": "some"})
    assert err.kind == "bad_request" and "pushes" in str(err), err


def test_denied_access_is_audited_when_asked(am: Am, people: dict[str, str]) -> None:
    am.repos("create_repo", actor="system", path="alice/Audited")

    def denials() -> list[dict[str, Any]]:
        return am.repos("query_audit", query={"action": "access.denied", "limit": 100})["items"]

    seen = len(denials())
    # Without `audit`, or when allowed, nothing is written.
    assert not am.repos("check_access", user=people["carol"], repo="alice/audited", access="read")[
        "allowed"
    ]
    assert am.repos(
        "check_access", user=people["alice"], repo="alice/audited", access="write", audit=True
    )["allowed"]
    assert len(denials()) == seen

    answer = am.repos(
        "check_access", user=people["carol"], repo="alice/audited.git", access="write", audit=True
    )
    assert answer["allowed"] is False
    entry = denials()[0]
    assert entry["actor"] == people["carol"] and entry["repo"] == "alice/Audited"
    assert entry["details"] == {
        "user": people["carol"],
        "access": "write",
        "reason": answer["reason"],
    }
    assert entry["node"]  # the calling node
    # Anonymous, unknown users, missing repositories and garbage are recorded too,
    # and the answer is the same denial as without auditing.
    for user, repo in [
        (None, "alice/audited"),
        ("user-999999", "alice/audited"),
        ("carol", "nobody/nothing"),
        (people["carol"], "bad\x01name/x"),
    ]:
        plain = am.repos("check_access", user=user, repo=repo, access="read")
        assert am.repos("check_access", user=user, repo=repo, access="read", audit=True) == plain
    latest = denials()[:4]
    assert [e["actor"] for e in latest] == [
        people["carol"],
        people["carol"],
        "user-999999",
        "anonymous",
    ]
    assert latest[0]["repo"] == "bad\\x01name/x"
    audited = am.repos("query_audit", query={"repo": "alice/Audited", "action": "access"})
    assert len(audited["items"]) == 3
    err = am.error(
        "am_repo_db",
        "check_access",
        {"user": None, "repo": "alice/audited", "access": "read", "audit": "yes"},
    )
    assert err.kind == "bad_request"


def test_list_repos_sends_the_models_json(am: Am, people: dict[str, str]) -> None:
    made = am.repos("create_repo", actor="system", path="alice/shape", description="s")
    listed = {r["full_name"]: r for r in am.repos("list_repos")["items"]}
    assert listed["alice/shape"] == made == am.repos("get_repo", repo="alice/shape")
    assert list(listed["alice/shape"]) == list(made)
