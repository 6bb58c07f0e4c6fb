"""The build queue in the store (builds.py): enqueue once per push event, take,
log lines in order, finish, cancel, rerun, interrupted runners, durability."""

from __future__ import annotations

from pathlib import Path

import pytest

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.store import Store

C1, C2 = "a" * 40, "b" * 40
S = "system"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(str(tmp_path / "am.sqlite3"))
    s.add_user("alice", actor=S)
    s.create_repo("alice/p", actor=S)
    return s


def queue(store: Store, *commits: str, event_id: str | None = "e1") -> list[int]:
    wanted = [{"ref": f"refs/heads/b{i}", "commit": c} for i, c in enumerate(commits)]
    return [
        b.number
        for b in store.enqueue_builds(
            "alice/p", wanted, actor="user-1", event_id=event_id, pusher="user-1"
        )
    ]


def test_enqueue_is_idempotent_per_event_and_durable(store: Store, tmp_path: Path) -> None:
    events: list[dict] = []
    store._on_change = events.append
    assert queue(store, C1, C2) == [1, 2]
    assert queue(store, C1, C2) == [1, 2]  # the same push delivered again
    assert [e["kind"] for e in events] == ["build.queued", "build.queued"]
    assert queue(store, C1, event_id="e2") == [3]
    store.close()
    again = Store(str(tmp_path / "am.sqlite3"))
    assert [b.status.value for b in again.list_builds()] == ["queued"] * 3
    assert again.get_build("#2").ref == "refs/heads/b1"


def test_bad_input(store: Store) -> None:
    with pytest.raises(NotFound):
        store.enqueue_builds("alice/none", [{"ref": "refs/heads/m", "commit": C1}], actor=S)
    with pytest.raises(BadRequest):
        store.enqueue_builds("alice/p", [{"ref": "main", "commit": C1}], actor=S)
    with pytest.raises(BadRequest):
        store.enqueue_builds("alice/p", [{"ref": "refs/heads/m", "commit": "0" * 40}], actor=S)
    for ref in ("x", "#0", "build-x", None):
        with pytest.raises(BadRequest):
            store.get_build(ref)
    with pytest.raises(NotFound):
        store.get_build("build-9")


def test_run_log_finish(store: Store) -> None:
    queue(store, C1, C2)
    [first] = store.take_builds("ab@h", 1, actor=S)
    assert first.number == 1 and first.runner == "ab@h" and first.started_at is not None
    assert store.append_build_log(1, ["a", "b"], runner="ab@h", attempt=1, actor=S)["next"] == 2
    assert store.append_build_log(1, ["c"], runner="ab@h", attempt=1, actor=S)["next"] == 3
    page = store.read_build_log(1, after=1)
    assert page["lines"] == [[2, "b"], [3, "c"]] and page["next"] == 3 and not page["final"]
    with pytest.raises(Conflict):  # another runner, or a stale attempt
        store.append_build_log(1, ["x"], runner="ab@other", attempt=1, actor=S)
    with pytest.raises(Conflict):
        store.finish_build(1, {"status": "succeeded"}, runner="ab@h", attempt=2, actor=S)
    done = store.finish_build(
        1,
        {"status": "failed", "exit_code": 2, "reason": "exited with code 2"},
        runner="ab@h",
        attempt=1,
        actor=S,
    )
    assert done.status.value == "failed" and done.exit_code == 2 and done.log_size == 6
    assert store.read_build_log(1)["final"]
    with pytest.raises(BadRequest):
        store.finish_build(2, {"status": "running"}, runner="ab@h", attempt=1, actor=S)


def test_cancel_rerun_interrupt(store: Store) -> None:
    queue(store, C1, C2)
    assert store.cancel_build(2, actor="user-1").status.value == "cancelled"
    store.take_builds("ab@h", 5, actor=S)
    running = store.cancel_build(1, actor="user-1")
    assert running.status.value == "running" and running.cancel_requested
    assert store.append_build_log(1, ["x"], runner="ab@h", attempt=1, actor=S)["cancel"]
    with pytest.raises(Conflict):
        store.cancel_build(2, actor=S)
    rerun = store.rerun_build(2, actor="user-1")
    assert rerun.number == 3 and rerun.attempt == 2 and rerun.commit == C2
    [taken] = store.take_builds("ab@h", 5, actor=S)
    assert taken.number == 3
    # ab@h comes back running nothing: build 1 (cancel asked) is cancelled,
    # build 3 is queued again (requeue) with its earlier lines kept
    store.append_build_log(3, ["first try"], runner="ab@h", attempt=2, actor=S)
    changed = store.interrupt_builds("ab@h", policy="requeue", actor=S)
    assert {b.number: b.status.value for b in changed} == {1: "cancelled", 3: "queued"}
    assert store.get_build(3).attempt == 3
    assert [line for _, line in store.read_build_log(3)["lines"]] == [
        "first try",
        "applikant: interrupted (queued again)",
    ]
    [again] = store.take_builds("ab@h", 1, actor=S)
    assert store.interrupt_builds("ab@h", policy="fail", keep=[again.id], actor=S) == []
    [failed] = store.interrupt_builds("ab@h", policy="fail", actor=S, why="interrupted")
    assert failed.status.value == "failed" and failed.reason == "interrupted"
    assert store.build_counts() == {
        "queued": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 1,
        "cancelled": 2,
        "timed-out": 0,
    }


def test_renamed_repo_and_listing(store: Store) -> None:
    queue(store, C1)
    store.rename_repo("alice/p", "alice/q", actor=S)
    assert store.get_build(1).repo == "alice/q"
    assert [b.number for b in store.list_builds(repo="alice/q")] == [1]
    assert store.list_builds(status="running") == []
    with pytest.raises(BadRequest):
        store.list_builds(status="nope")
