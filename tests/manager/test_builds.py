"""The build queue in the store (builds.py): enqueue once per push event, take,
log lines in order, finish, cancel, rerun, interrupted runners, durability."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.store import Store
from tests.manager.conftest import FAST

C1, C2 = "a" * 40, "b" * 40
S = "system"


@pytest.fixture
def events() -> list[dict]:
    return []


@pytest.fixture
def store(db: str, events: list[dict]) -> Iterator[Store]:
    s = Store(db, on_change=events.append, passwords=FAST)
    s.users.add("alice", actor=S)
    s.repos.create("alice/p", actor=S)
    yield s
    s.close()


def queue(store: Store, *commits: str, event_id: str | None = "e1") -> list[int]:
    wanted = [{"ref": f"refs/heads/b{i}", "commit": c} for i, c in enumerate(commits)]
    return [
        b.number
        for b in store.builds.enqueue(
            "alice/p", wanted, actor="user-1", event_id=event_id, pusher="user-1"
        )
    ]


def test_enqueue_is_idempotent_per_event_and_durable(
    store: Store, db: str, events: list[dict]
) -> None:
    events.clear()
    assert queue(store, C1, C2) == [1, 2]
    assert queue(store, C1, C2) == [1, 2]  # the same push delivered again
    assert [e["kind"] for e in events] == ["build.queued", "build.queued"]
    assert queue(store, C1, event_id="e2") == [3]
    store.close()
    with Store(db, passwords=FAST) as again:
        assert [b.status.value for b in again.builds.all()] == ["queued"] * 3
        assert again.builds.get("#2").ref == "refs/heads/b1"


def test_bad_input(store: Store) -> None:
    with pytest.raises(NotFound):
        store.builds.enqueue("alice/none", [{"ref": "refs/heads/m", "commit": C1}], actor=S)
    with pytest.raises(BadRequest):
        store.builds.enqueue("alice/p", [{"ref": "main", "commit": C1}], actor=S)
    with pytest.raises(BadRequest):
        store.builds.enqueue("alice/p", [{"ref": "refs/heads/m", "commit": "0" * 40}], actor=S)
    for ref in ("x", "#0", "build-x", None):
        with pytest.raises(BadRequest):
            store.builds.get(ref)
    with pytest.raises(NotFound):
        store.builds.get("build-9")


def test_run_log_finish(store: Store) -> None:
    queue(store, C1, C2)
    [first] = store.builds.take("ab@h", 1, actor=S)
    assert first.number == 1 and first.runner == "ab@h" and first.started_at is not None
    assert store.builds.append_log(1, ["a", "b"], runner="ab@h", attempt=1, actor=S)["next"] == 2
    assert store.builds.append_log(1, ["c"], runner="ab@h", attempt=1, actor=S)["next"] == 3
    page = store.builds.read_log(1, after=1)
    assert page["lines"] == [[2, "b"], [3, "c"]] and page["next"] == 3 and not page["final"]
    with pytest.raises(Conflict):  # another runner, or a stale attempt
        store.builds.append_log(1, ["x"], runner="ab@other", attempt=1, actor=S)
    with pytest.raises(Conflict):
        store.builds.finish(1, {"status": "succeeded"}, runner="ab@h", attempt=2, actor=S)
    done = store.builds.finish(
        1,
        {"status": "failed", "exit_code": 2, "reason": "exited with code 2"},
        runner="ab@h",
        attempt=1,
        actor=S,
    )
    assert done.status.value == "failed" and done.exit_code == 2 and done.log_size == 6
    assert store.builds.read_log(1)["final"]
    with pytest.raises(BadRequest):
        store.builds.finish(2, {"status": "running"}, runner="ab@h", attempt=1, actor=S)


def test_cancel_rerun_interrupt(store: Store) -> None:
    queue(store, C1, C2)
    assert store.builds.cancel(2, actor="user-1").status.value == "cancelled"
    store.builds.take("ab@h", 5, actor=S)
    running = store.builds.cancel(1, actor="user-1")
    assert running.status.value == "running" and running.cancel_requested
    assert store.builds.append_log(1, ["x"], runner="ab@h", attempt=1, actor=S)["cancel"]
    with pytest.raises(Conflict):
        store.builds.cancel(2, actor=S)
    rerun = store.builds.rerun(2, actor="user-1")
    assert rerun.number == 3 and rerun.attempt == 2 and rerun.commit == C2
    [taken] = store.builds.take("ab@h", 5, actor=S)
    assert taken.number == 3
    # ab@h comes back running nothing: build 1 (cancel asked) is cancelled,
    # build 3 is queued again (requeue) with its earlier lines kept
    store.builds.append_log(3, ["first try"], runner="ab@h", attempt=2, actor=S)
    changed = store.builds.interrupt("ab@h", policy="requeue", actor=S)
    assert {b.number: b.status.value for b in changed} == {1: "cancelled", 3: "queued"}
    assert store.builds.get(3).attempt == 3
    assert [line for _, line in store.builds.read_log(3)["lines"]] == [
        "first try",
        "applikant: interrupted (queued again)",
    ]
    [again] = store.builds.take("ab@h", 1, actor=S)
    assert store.builds.interrupt("ab@h", policy="fail", keep=[again.id], actor=S) == []
    [failed] = store.builds.interrupt("ab@h", policy="fail", actor=S, why="interrupted")
    assert failed.status.value == "failed" and failed.reason == "interrupted"
    assert store.builds.counts() == {
        "queued": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
        "cancelled": 2,
        "timed-out": 0,
    }


def test_renamed_repo_and_listing(store: Store) -> None:
    queue(store, C1)
    store.repos.rename("alice/p", "alice/q", actor=S)
    assert store.builds.get(1).repo == "alice/q"
    assert [b.number for b in store.builds.all(repo="alice/q")] == [1]
    assert store.builds.all(status="running") == []
    with pytest.raises(BadRequest):
        store.builds.all(status="nope")


def _finish_all(store: Store) -> None:
    for build in store.builds.all(limit=1000):
        if build.status.value == "queued":
            store.builds.cancel(build.id, actor=S)


def test_builds_are_numbered_per_repository(store: Store) -> None:
    store.repos.create("alice/q", actor=S)
    assert queue(store, C1, C2) == [1, 2]
    made = store.builds.enqueue("alice/q", [{"ref": "refs/heads/m", "commit": C1}], actor=S)
    assert [(b.repo, b.number) for b in made] == [("alice/q", 1)]
    assert store.builds.get("alice/q#1").id == made[0].id
    assert store.builds.get("alice/p #2").ref == "refs/heads/b1"  # as people write it
    assert store.builds.get("1", repo="alice/q").id == made[0].id
    assert store.builds.get(made[0].id).number == 1  # the id still names it
    with pytest.raises(NotFound, match="no build alice/q #9"):
        store.builds.get("alice/q#9")
    again = store.builds.rerun("alice/q#1", actor="user-1")
    assert (again.repo, again.number) == ("alice/q", 2)
    assert store.builds.get("alice/p#1").pusher_login == "alice"


def test_prune_keeps_the_newest_finished_builds_of_each_repository(store: Store) -> None:
    store.repos.create("alice/q", actor=S)
    for i in range(5):
        queue(store, C1, event_id=f"p{i}")
    store.builds.enqueue("alice/q", [{"ref": "refs/heads/m", "commit": C1}], actor=S)
    _finish_all(store)
    queue(store, C2, event_id="still-queued")  # #6 of alice/p, never pruned
    assert store.builds.prune(2, limit=2) == 2  # a batch at a time
    assert store.builds.prune(2) == 2
    assert store.builds.prune(2) == 0
    assert [b.number for b in store.builds.all(repo="alice/p")] == [6, 5]
    assert [b.number for b in store.builds.all(repo="alice/q")] == [1]
    # Numbers go on from the last one given, not from what is left.
    assert queue(store, C1, event_id="after") == [7]
    with pytest.raises(BadRequest):
        store.builds.prune(0)


def test_latest_of_a_branch_and_builds_of_commits(store: Store) -> None:
    assert store.builds.latest("alice/p", "refs/heads/b0") is None
    queue(store, C1, event_id="x1")
    queue(store, C1, event_id="x2")
    latest = store.builds.latest("alice/p", "refs/heads/b0")
    assert latest is not None and latest.number == 2
    found = store.builds.of_commits("alice/p", [C1, C2, C1])
    assert set(found) == {C1} and found[C1].number == 2


def test_schema_9_numbers_the_builds_of_an_older_store(tmp_path: Path) -> None:
    """A store at schema 8 gets its builds numbered per repository, in the order
    they were queued, when am opens it."""
    from applikant.manager.store.schema import MIGRATIONS

    path = str(tmp_path / "old.sqlite3")
    old = Store(path, migrations=MIGRATIONS[:8])  # the last schema before numbering
    old.users.add("alice", actor=S)
    for name in ("p", "q"):
        old.repos.create(f"alice/{name}", actor=S)
    with old.transaction(S) as tx:
        for repo_id, name in ((1, "p"), (2, "q"), (1, "p"), (1, "p")):
            tx.run(
                "INSERT INTO builds (repo_id, repo, ref, commit_id, queued_at) VALUES (?, ?, ?, ?, ?)",
                (repo_id, f"alice/{name}", "refs/heads/main", C1, tx.now),
            )
    old.close()
    new = Store(path)
    assert new.schema_version == len(MIGRATIONS)
    assert [(b.id, b.number) for b in new.builds.all(repo="alice/p")] == [
        ("build-4", 3),
        ("build-3", 2),
        ("build-1", 1),
    ]
    assert [b.number for b in new.builds.all(repo="alice/q")] == [1]
    made = new.builds.enqueue("alice/p", [{"ref": "refs/heads/main", "commit": C2}], actor=S)
    assert made[0].number == 4


def test_a_nul_in_a_log_line_is_stored_on_every_backend(store: Store) -> None:
    """PostgreSQL's text cannot hold NUL: it is kept as U+FFFD there, as is on SQLite."""
    [build] = store.builds.enqueue("alice/p", [{"ref": "refs/heads/main", "commit": C1}], actor=S)
    [running] = store.builds.take("ab@x", 1, actor=S)
    store.builds.append_log(running.id, ["a\x00b"], runner="ab@x", attempt=1, actor=S)
    [[_, line]] = store.builds.read_log(build.id)["lines"]
    assert line in ("a\x00b", "a\ufffdb")
