"""The build queue in the store (builds.py): enqueue once per push event, take,
log lines in order, finish, cancel, rerun, interrupted runners, durability."""

from __future__ import annotations

from collections.abc import Iterator

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


def test_a_nul_in_a_log_line_is_stored_on_every_backend(store: Store) -> None:
    """PostgreSQL's text cannot hold NUL: it is kept as U+FFFD there, as is on SQLite."""
    [build] = store.builds.enqueue("alice/p", [{"ref": "refs/heads/main", "commit": C1}], actor=S)
    [running] = store.builds.take("ab@x", 1, actor=S)
    store.builds.append_log(running.id, ["a\x00b"], runner="ab@x", attempt=1, actor=S)
    [[_, line]] = store.builds.read_log(build.id)["lines"]
    assert line in ("a\x00b", "a\ufffdb")
