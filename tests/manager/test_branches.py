"""Protected branches and per-ref push decisions."""

from __future__ import annotations

import pytest

from applikant.manager.errors import BadRequest, NotFound
from applikant.manager.store import SYSTEM, Event, Store
from applikant.schema.hooks import RefUpdate

Z = "0" * 40
A = "a" * 40
B = "b" * 40


@pytest.fixture
def repo(store: Store, alice: str, bob: str, root: str) -> str:
    """alice owns alice/app; bob can write; carol can read."""
    store.repos.create("alice/app", actor=SYSTEM)
    store.access.grant("alice/app", bob, "write", actor=SYSTEM)
    carol = store.users.add("carol", actor=SYSTEM).id
    store.access.grant("alice/app", carol, "read", actor=SYSTEM)
    store.branches.protect("alice/app", "main", actor=SYSTEM)
    store.branches.protect("alice/app", "refs/heads/release/*", actor=SYSTEM, admins_only=True)
    return "alice/app"


def decide(
    store: Store, user: str | None, ref: str, old: str, new: str, ff: bool | None = None
) -> str:
    d = store.branches.decide_ref(user, "alice/app", ref, old, new, ff)
    return "ok" if d.allowed else d.reason


def test_protect_list_unprotect(store: Store, alice: str, events: list[Event]) -> None:
    store.repos.create("alice/app", actor=SYSTEM)
    events.clear()
    rule = store.branches.protect("alice/app", "release/*", actor=alice)
    assert (rule.pattern, rule.admins_only) == ("release/*", False)
    assert store.branches.protect(
        "alice/app", "release/*", actor=alice, admins_only=True
    ).admins_only
    assert [(p.pattern, p.admins_only) for p in store.branches.rules("alice/app")] == [
        ("release/*", True)
    ]
    store.branches.unprotect("alice/app", "refs/heads/release/*", actor=alice)
    assert store.branches.rules("alice/app") == []
    with pytest.raises(NotFound, match="no protection rule"):
        store.branches.unprotect("alice/app", "main", actor=alice)
    with pytest.raises(BadRequest):
        store.branches.protect("alice/app", "bad pattern", actor=alice)
    with pytest.raises(NotFound):
        store.branches.protect("alice/none", "main", actor=alice)
    assert [e["kind"] for e in events] == [
        "branch.protected",
        "branch.protected",
        "branch.unprotected",
    ]


def test_write_needed(store: Store, repo: str) -> None:
    carol = store.users.get("carol").id
    assert (
        decide(store, carol, "refs/heads/topic", A, B, True)
        == "carol has no write access to alice/app"
    )
    assert "does not exist or you have no write access" in decide(
        store, None, "refs/heads/topic", A, B, True
    )
    assert decide(store, "user-2", "refs/heads/topic", A, B, True) == "ok"


def test_unprotected_branches_allow_everything(store: Store, repo: str, bob: str) -> None:
    assert decide(store, bob, "refs/heads/topic", Z, A) == "ok"
    assert decide(store, bob, "refs/heads/topic", A, B, False) == "ok"
    assert decide(store, bob, "refs/heads/topic", A, Z) == "ok"
    assert decide(store, bob, "refs/notes/commits", A, B, False) == "ok"


def test_protected_branch(store: Store, repo: str, bob: str, root: str, alice: str) -> None:
    assert decide(store, bob, "refs/heads/main", A, B, True) == "ok"
    assert decide(store, bob, "refs/heads/main", Z, A) == "ok"  # creation is no force-push
    for user in (bob, alice, root):  # nobody, admins included
        assert "force-push (non-fast-forward update) refused" in decide(
            store, user, "refs/heads/main", A, B, False
        )
        assert "cannot be deleted" in decide(store, user, "refs/heads/main", A, Z)
    assert "not checked for fast-forward" in decide(store, bob, "refs/heads/main", A, B, None)
    # Patterns are exact fnmatch on the branch name, case-sensitive.
    assert decide(store, bob, "refs/heads/mainline", A, B, False) == "ok"
    assert decide(store, bob, "refs/heads/Main", A, B, False) == "ok"


def test_admins_only(store: Store, repo: str, bob: str, alice: str, root: str) -> None:
    reason = decide(store, bob, "refs/heads/release/1.0", A, B, True)
    assert "only repository admins may push to it" in reason and "write access" in reason
    assert "only repository admins" in decide(store, bob, "refs/heads/release/1.0", Z, A)
    assert "only repository admins" in decide(store, bob, "refs/heads/release/1.0/hotfix", Z, A)
    assert decide(store, alice, "refs/heads/release/1.0", A, B, True) == "ok"
    assert decide(store, root, "refs/heads/release/1.0", Z, A) == "ok"
    assert "force-push" in decide(store, root, "refs/heads/release/1.0", A, B, False)


def test_tags(store: Store, repo: str, bob: str, alice: str) -> None:
    assert decide(store, bob, "refs/tags/v1", Z, A) == "ok"
    assert (
        decide(store, bob, "refs/tags/v1", A, B)
        == "tag v1 already exists and can only be moved by a repository admin"
    )
    assert (
        decide(store, bob, "refs/tags/v1", A, Z)
        == "tag v1 already exists and can only be deleted by a repository admin"
    )
    assert decide(store, alice, "refs/tags/v1", A, B) == "ok"
    assert decide(store, alice, "refs/tags/v1", A, Z) == "ok"


def test_many_refs_at_once(store: Store, repo: str, bob: str) -> None:
    updates = [RefUpdate(refname=f"refs/heads/b{i}", old=Z, new=A) for i in range(100)]
    updates.append(RefUpdate(refname="refs/heads/main", old=A, new=B, is_fast_forward=False))
    decisions = store.branches.decide(bob, "alice/app", updates)
    assert [d.allowed for d in decisions] == [True] * 100 + [False]
    as_dicts = [u.model_dump() for u in updates[:2]]
    assert all(d.allowed for d in store.branches.decide(bob, "alice/app", as_dicts))


@pytest.mark.parametrize(
    ("ref", "old", "new"),
    [
        ("main", A, B),
        ("refs/heads/a..b", A, B),
        ("refs/heads/x", "xyz", B),
        ("refs/heads/x", Z, Z),
        ("refs/heads/x", A.upper(), B),
    ],
)
def test_malformed_updates(store: Store, repo: str, bob: str, ref: str, old: str, new: str) -> None:
    with pytest.raises(BadRequest):
        store.branches.decide_ref(bob, "alice/app", ref, old, new, True)


def test_malformed_update_dict(store: Store, repo: str, bob: str) -> None:
    with pytest.raises(BadRequest, match="malformed ref update"):
        store.branches.decide(bob, "alice/app", [{"refname": "refs/heads/x"}])
