"""The audit log: same-transaction writes, append-only, queries, dashboard counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Event, Store
from applikant.schema.hooks import RefUpdate
from applikant.schema.repos import Counts
from tests.manager.helpers import (
    break_audit,
    is_postgres,
    mend_audit,
    plan,
    random_ed25519_line,
    raw,
    scans_a_table,
    uses_index,
)

A, B, Z = "a" * 40, "b" * 40, "0" * 40


def test_change_and_audit_entry_commit_together(
    store: Store, alice: str, events: list[Event]
) -> None:
    events.clear()
    break_audit(store)
    with pytest.raises(Conflict, match="audit insert failed"):
        store.users.add("bob", actor=SYSTEM)
    with pytest.raises(Conflict):
        store.keys.add(alice, random_ed25519_line(), actor=SYSTEM)
    with pytest.raises(Conflict):
        store.repos.create("alice/app", actor=SYSTEM)
    with pytest.raises(Conflict):
        store.users.disable(alice, actor=SYSTEM)
    mend_audit(store)
    assert [u.login for u in store.users.all()] == ["alice"]
    assert not store.users.get(alice).disabled
    assert store.keys.of(alice) == [] and store.repos.all() == []
    assert [e.action for e in store.audit.query()] == ["user.add"]
    assert events == []  # nothing is announced that was not committed
    assert not store.core.backend.in_transaction(store.core.connection)


def test_audit_is_append_only(store: Store, alice: str) -> None:
    refused = store.core.backend.integrity_errors
    with pytest.raises(refused, match="append-only"):
        raw(store, "UPDATE audit_log SET actor = 'someone else'")
    with pytest.raises(refused, match="append-only"):
        raw(store, "DELETE FROM audit_log")
    if is_postgres(store):
        with pytest.raises(refused, match="append-only"):
            raw(store, "TRUNCATE audit_log")
    assert len(store.audit.query()) == 1
    assert not [name for name in dir(store) if name.startswith(("delete_audit", "update_audit"))]


def test_entries(store: Store, alice: str) -> None:
    store.repos.create("alice/app", actor=alice, node="aw@web")
    (entry,) = store.audit.query(action="repo.create")
    assert (entry.actor, entry.node, entry.repo) == (alice, "aw@web", "alice/app")
    assert entry.details == {"id": "repo-1", "is_public": False}
    assert entry.time.tzinfo is not None
    dumped = entry.model_dump(mode="json")
    assert dumped["time"].endswith("Z") and dumped["details"]["id"] == "repo-1"


def test_push_and_denials(store: Store, alice: str, events: list[Event]) -> None:
    store.repos.create("alice/app", actor=SYSTEM)
    events.clear()
    updates = [
        RefUpdate(refname="refs/heads/main", old=A, new=B),
        {"refname": "refs/tags/v1", "old": Z, "new": A},
    ]
    entry = store.audit.record_push("alice/app.git", updates, actor=alice, node="af@git")
    assert entry.action == "push" and entry.repo == "alice/app"
    assert entry.details["refs"] == [
        {"ref": "refs/heads/main", "old": A, "new": B},
        {"ref": "refs/tags/v1", "old": Z, "new": A},
    ]
    assert events[0]["kind"] == "repo.pushed" and events[0]["repo"] == "alice/app"
    store.audit.record(
        "push.denied",
        actor=alice,
        node="af@git",
        repo="alice/app",
        details={"ref": "refs/heads/main", "reason": "force-push refused"},
    )
    store.audit.record(
        "access.denied", actor="user-99", repo="ghost/../x", details={"reason": "no"}
    )
    assert [e.action for e in store.audit.query(action="push")] == ["push.denied", "push"]
    assert store.audit.recent_pushes() == [entry]
    with pytest.raises(NotFound):
        store.audit.record_push("alice/ghost", updates, actor=alice)
    with pytest.raises(BadRequest):
        store.audit.record("Bad Action", actor=alice)
    with pytest.raises(BadRequest):
        store.audit.record("x.y", actor=alice, details={"x": object()})
    with pytest.raises(BadRequest):
        store.audit.record("x.y", actor="")


def test_query_filters(tmp_path) -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]

    def clock() -> datetime:
        now[0] += timedelta(hours=1)
        return now[0]

    with Store(str(tmp_path / "am.sqlite3"), passwords=Passwords(fast=True), clock=clock) as store:
        alice = store.users.add("alice", actor=SYSTEM).id  # 01:00
        store.repos.create("alice/app", actor=alice)  # 02:00
        store.repos.create("alice/lib", actor=alice)  # 03:00
        store.audit.record("pushy", actor=alice)  # 04:00
        store.access.grant("alice/app", "alice", "read", actor=SYSTEM)  # 05:00
        assert [e.action for e in store.audit.query(actor=alice)] == [
            "pushy",
            "repo.create",
            "repo.create",
        ]
        assert [e.action for e in store.audit.query(action="repo")] == ["repo.create"] * 2
        assert store.audit.query(action="push") == []  # not "pushy"
        assert [e.action for e in store.audit.query(repo="alice/app.git")] == [
            "perm.grant",
            "repo.create",
        ]
        since = store.audit.query(since="2030-01-01T03:00:00Z")
        assert [e.action for e in since] == ["perm.grant", "pushy", "repo.create"]
        window = store.audit.query(
            since=datetime(2030, 1, 1, 2, tzinfo=UTC), until="2030-01-01T04:00:00+00:00"
        )
        assert [e.repo for e in window] == ["alice/lib", "alice/app"]
        assert len(store.audit.query(limit=2)) == 2
        for bad in (
            {"limit": 0},
            {"limit": 10**6},
            {"since": "yesterday"},
            {"until": datetime(2030, 1, 1)},
            {"action": "a b"},
        ):
            with pytest.raises(BadRequest):
                store.audit.query(**bad)  # type: ignore[arg-type]


def test_counts(store: Store, alice: str, bob: str) -> None:
    store.keys.add(alice, random_ed25519_line(), actor=SYSTEM)
    store.groups.create("team", actor=SYSTEM)
    store.repos.create("team/app", actor=SYSTEM)
    counts = store.audit.counts()
    assert (counts.users, counts.repos, counts.keys, counts.groups) == (2, 1, 1, 1)


def test_query_by_action_uses_an_index(store: Store) -> None:
    steps = plan(
        store,
        "SELECT * FROM audit_log WHERE (action = ? OR (action > ? AND action < ?))"
        " ORDER BY id DESC LIMIT 10",
        ("push", "push.", "push/"),
    )
    assert any("audit_by_action" in d for d in steps), steps


def test_entries_name_user_actors_by_login_and_filter_by_login(store: Store, alice: str) -> None:
    """`actor_login` is the account's login now; `cli:root` (the admin command
    line run by root) is recorded as given; a login filters like its id."""
    store.repos.create("alice/logins", actor=alice)
    store.repos.update("alice/logins", description="by the CLI", actor="cli:root")
    made, changed = store.audit.query(repo="alice/logins", limit=2)[::-1]
    assert (made.actor, made.actor_login) == (alice, "alice")
    assert (changed.actor, changed.actor_login) == ("cli:root", None)
    assert [e.id for e in store.audit.query(actor="alice", repo="alice/logins")] == [made.id]
    assert [e.id for e in store.audit.query(actor="cli:root")] == [changed.id]
    with pytest.raises(BadRequest, match="no user 'nobody'"):
        store.audit.query(actor="nobody")


def test_a_users_counts_stop_at_the_cap(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A non-admin's figures are what they may read, at a bounded cost: past the
    cap they are shown as "at least" (named in `capped`)."""
    from applikant.manager.store import audit

    monkeypatch.setattr(audit, "COUNT_CAP", 3)
    alice = store.users.add("alice", actor=SYSTEM).id
    bob = store.users.add("bob", actor=SYSTEM).id
    for i in range(3):
        store.users.add(f"u{i}", actor=SYSTEM)
    store.groups.create("team", actor=SYSTEM)
    store.groups.add_member("team", alice, actor=SYSTEM)
    store.keys.add(alice, random_ed25519_line(), actor=SYSTEM)
    store.repos.create("alice/a", actor=SYSTEM)
    store.repos.create("bob/public", actor=SYSTEM, is_public=True)
    store.repos.create("bob/secret", actor=SYSTEM)
    store.repos.create("bob/granted", actor=SYSTEM)
    store.access.grant("bob/granted", "team", "read", actor=SYSTEM)
    for repo in ("alice/a", "alice/a", "bob/secret", "bob/granted"):
        store.audit.record_push(repo, [{"refname": "refs/heads/m", "old": Z, "new": A}], actor=bob)
    counts = store.audit.counts_for(alice)
    assert (counts.users, counts.groups, counts.keys) == (3, 1, 1)
    assert (counts.repos, counts.pushes) == (3, 3)  # not bob/secret, nor its push
    assert counts.capped == ["users"]
    store.repos.create("team/more", actor=SYSTEM)
    counts = store.audit.counts_for(alice)
    assert (counts.repos, counts.capped) == (3, ["pushes", "repos", "users"])
    counts = store.audit.counts_for(bob)
    assert (counts.repos, counts.pushes, counts.keys) == (3, 2, 0)  # his own and public
    store.users.disable(alice, actor=SYSTEM)
    assert (store.audit.counts_for(alice).repos, store.audit.counts_for(alice).pushes) == (0, 0)


def test_the_figures_without_pushes(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """`pushes=False` (the dashboard, which shows no such figure) leaves the
    pushes uncounted (None, never "capped") and every other figure as it was,
    under the cap and past it, for a user and for a site admin."""
    from applikant.manager.store import audit

    monkeypatch.setattr(audit, "COUNT_CAP", 3)
    alice = store.users.add("alice", actor=SYSTEM).id
    bob = store.users.add("bob", actor=SYSTEM).id
    store.groups.create("team", actor=SYSTEM)
    store.groups.add_member("team", alice, actor=SYSTEM)
    store.repos.create("alice/a", actor=SYSTEM)
    store.repos.create("bob/public", actor=SYSTEM, is_public=True)
    store.repos.create("bob/secret", actor=SYSTEM)
    store.repos.create("bob/granted", actor=SYSTEM)
    store.access.grant("bob/granted", "team", "read", actor=SYSTEM)
    store.audit.record_push("alice/a", [{"refname": "refs/heads/m", "old": Z, "new": A}], actor=bob)

    def without(counts: Counts) -> dict[str, object]:
        return counts.model_dump(exclude={"pushes", "capped"}) | {
            "capped": [c for c in counts.capped if c != "pushes"]
        }

    for more in ("team/one", "team/two"):  # 3 readable (exact), then 4 (capped)
        full, lean = store.audit.counts_for(alice), store.audit.counts_for(alice, pushes=False)
        assert (full.pushes, lean.pushes) == (1, None)
        assert "pushes" not in lean.capped and without(lean) == without(full)
        store.repos.create(more, actor=SYSTEM)
    assert (lean.repos, lean.capped) == (3, ["repos"])
    site = store.audit.counts(pushes=False)
    assert site.pushes is None and site.model_dump(exclude={"pushes"}) == (
        store.audit.counts().model_dump(exclude={"pushes"})
    )


def test_a_users_counts_read_index_ranges(store: Store) -> None:
    """The figures' statement finds pushes repository by repository, never
    among all the site's pushes, on either backend."""
    from applikant.manager.store import listing
    from applikant.manager.store.audit import READABLE_COUNTS_SQL
    from applikant.manager.store.rows import user_row

    alice = store.users.add("alice", actor=SYSTEM).id
    store.repos.create("alice/a", actor=SYSTEM)
    with store.core.read() as q:
        ids, params = listing.readable_ids(q, user_row(q, alice), 11)
    steps = plan(store, READABLE_COUNTS_SQL.format(ids=ids), (*params, 11))
    # SQLite names the scan of a subquery's rows (a range it read) by the subquery.
    tables = [d for d in steps if not re.match(r"SCAN (CONSTANT ROW|readable|arm\d+|c)$", d)]
    assert not scans_a_table(tables), steps
    assert uses_index(steps, "audit_by_repo_action"), steps


def test_a_users_repositories_are_counted_by_merging_ranges(store: Store) -> None:
    """The count of what a user may read (the dashboard's figure) reads an
    index range per source of access, and SQLite merges the ranges in their
    indexes' order up to the cap (MERGE (UNION), no sort at all) rather than
    gathering every row of every range in one temporary B-tree to sort it
    again (twice the cost for a user who reads 10,000 through several
    sources). The ids are right however the sources overlap, up to the cap."""
    from applikant.manager.store import listing
    from applikant.manager.store.rows import user_row

    alice = store.users.add("alice", actor=SYSTEM).id
    bob = store.users.add("bob", actor=SYSTEM).id
    store.groups.create("team", actor=SYSTEM)
    store.groups.add_member("team", alice, actor=SYSTEM)
    readable, bobs = [], []
    for i in range(12):  # each source, alone and overlapping, and some unreadable
        owner = ("alice", "team", "bob")[i % 3]
        repo = store.repos.create(f"{owner}/r{i}", actor=SYSTEM, is_public=i % 4 == 0)
        if i % 5 == 0:
            store.access.grant(repo.full_name, "alice", "read", actor=SYSTEM)
        if i % 7 == 0:
            store.access.grant(repo.full_name, "team", "read", actor=SYSTEM)
        number = int(repo.id.removeprefix("repo-"))
        if owner != "bob" or i % 4 == 0 or i % 5 == 0 or i % 7 == 0:
            readable.append(number)
        if owner == "bob" or i % 4 == 0:
            bobs.append(number)
    assert len(readable) < 12
    with store.core.read() as q:
        for cap in (100, len(readable), 3):
            ids, params = listing.readable_ids(q, user_row(q, alice), cap)
            assert [r[0] for r in q.all(ids, params)] == readable[:cap], cap
        assert [r[0] for r in q.all(*listing.readable_ids(q, user_row(q, bob), 100))] == bobs
    steps = plan(store, f"SELECT count(*) FROM ({ids}) AS c", tuple(params))
    tables = [d for d in steps if not re.match(r"SCAN (readable|arm\d+)$", d)]
    assert not scans_a_table(tables), steps
    for index in ("repos_public", "repos_by_owner", "repo_perms_by_grantee"):
        assert uses_index(steps, index), (index, steps)
    if not is_postgres(store):
        assert "MERGE (UNION)" in steps and not any("TEMP B-TREE" in d for d in steps), steps
