"""The managing af's journaled repository operations, with real git: each one
idempotent, an interrupted one finished (or rolled back) by a replay, and a
process stopped by the fault hook between its intent and its act."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from applikant.frontend.repodisk import RepoDisk
from applikant.frontend.repoops import FAULT_ENV, ID_FILE, RepoOps


@pytest.fixture
def ops(tmp_path: Path) -> RepoOps:
    hook = tmp_path / "hook"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)
    return RepoOps(RepoDisk(str(tmp_path / "repos"), str(hook)), "af@test")


def repo(name: str, repo_id: str, branch: str = "main") -> dict[str, str]:
    return {"full_name": name, "id": repo_id, "default_branch": branch}


def pending(ops: RepoOps) -> list[dict]:
    return [intent for _, intent in ops.journal.pending()[0]]


def test_ensure_creates_once_with_its_id_and_leaves_no_intent(ops: RepoOps) -> None:
    path = ops.ensure(repo("alice/p", "repo-1", "trunk"))
    assert ops.read_id("alice/p") == "repo-1"
    assert Path(path, "HEAD").read_text() == "ref: refs/heads/trunk\n"
    assert ops.ensure(repo("alice/p", "repo-1", "trunk")) == path
    assert pending(ops) == [] and ops.disk.list() == ["alice/p"]


def test_a_new_repo_carries_its_id_the_moment_it_appears(
    ops: RepoOps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id is written into the temporary repo before the rename that makes it
    visible: another af or aw never sees a repo without its id."""
    from applikant.frontend import repodisk

    seen: list[str | None] = []
    real_rename = os.rename

    def rename(src: str, dst: str) -> None:
        if os.path.basename(src).startswith(repodisk._TMP_PREFIX):
            seen.append(Path(src, ID_FILE).read_text() if Path(src, ID_FILE).exists() else None)
        real_rename(src, dst)

    monkeypatch.setattr(repodisk.os, "rename", rename)
    ops.ensure(repo("alice/p", "repo-7"))
    assert seen == ["repo-7\n"] and ops.read_id("alice/p") == "repo-7"


def test_a_repo_with_another_id_under_the_name_is_set_aside(ops: RepoOps) -> None:
    ops.ensure(repo("alice/p", "repo-1"))
    Path(ops.disk.path("alice/p"), "marker-file").write_text("old content")
    ops.ensure(repo("alice/p", "repo-2"))
    assert ops.read_id("alice/p") == "repo-2"
    assert not Path(ops.disk.path("alice/p"), "marker-file").exists()
    [aside] = [p for p in Path(ops.disk.root).iterdir() if p.name.startswith(".orphaned-")]
    assert (aside / "marker-file").read_text() == "old content"


def test_rename_and_delete_follow_ids_and_are_idempotent(ops: RepoOps) -> None:
    ops.ensure(repo("alice/p", "repo-1"))
    assert ops.rename("alice/p", "bob/q", "repo-1") == ops.disk.path("bob/q")
    assert ops.rename("alice/p", "bob/q", "repo-1") is None
    assert ops.delete("bob/q", "repo-9") is False  # another repo's id: not the one am deleted
    assert ops.delete("bob/q", "repo-1") is True
    assert ops.delete("bob/q", "repo-1") is False
    assert ops.disk.list() == [] and pending(ops) == []


def test_replay_finishes_what_was_started_and_rolls_back_what_am_dropped(ops: RepoOps) -> None:
    ops.ensure(repo("alice/renamed", "repo-1"))
    ops.ensure(repo("alice/deleted", "repo-2"))
    journal = ops.journal
    journal.begin({"op": "create", "repo": "alice/new", "id": "repo-3", "default_branch": "dev"})
    journal.begin({"op": "create", "repo": "alice/dropped", "id": "repo-4"})
    ops.disk.create("alice/dropped")  # it got as far as the disk, then am deleted it
    Path(ops.disk.path("alice/dropped"), ID_FILE).write_text("repo-4\n")
    journal.begin({"op": "rename", "old": "alice/renamed", "new": "bob/renamed", "id": "repo-1"})
    journal.begin({"op": "delete", "repo": "alice/deleted", "id": "repo-2"})
    journal.begin({"op": "frobnicate"})
    am = [repo("alice/new", "repo-3", "dev"), repo("bob/renamed", "repo-1")]
    assert ops.replay(am) == 5
    assert ops.disk.list() == ["alice/new", "bob/renamed"]
    assert ops.read_id("alice/new") == "repo-3"
    assert Path(ops.disk.path("alice/new"), "HEAD").read_text() == "ref: refs/heads/dev\n"
    assert pending(ops) == []
    assert ops.replay(am) == 0


def test_reconcile_follows_missed_renames_creates_the_missing_and_deletes_nothing(
    ops: RepoOps,
) -> None:
    ops.ensure(repo("alice/old-name", "repo-1"))
    ops.ensure(repo("alice/unknown", "repo-7"))
    ops.reconcile([repo("alice/new-name", "repo-1"), repo("carol/missing", "repo-2")])
    assert ops.disk.list() == ["alice/new-name", "alice/unknown", "carol/missing"]
    assert ops.read_id("alice/new-name") == "repo-1"


_CHILD = """
import sys
from applikant.frontend.repodisk import RepoDisk
from applikant.frontend.repoops import RepoOps
ops = RepoOps(RepoDisk(sys.argv[1], sys.argv[2]), "af@child")
print("ready", flush=True)
ops.delete("alice/p", "repo-1")
print("deleted", flush=True)
"""


def test_a_holder_stopped_between_intent_and_act_is_finished_by_the_next(
    ops: RepoOps, tmp_path: Path
) -> None:
    ops.ensure(repo("alice/p", "repo-1"))
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, ops.disk.root, ops.disk.hook_program],
        env={**os.environ, FAULT_ENV: "stop-after-intent:delete"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 30
        while not pending(ops):
            assert time.monotonic() < deadline and child.poll() is None, "no intent written"
            time.sleep(0.02)
        # Stopped with its intent durable and the repo untouched: kill it there.
        time.sleep(0.3)
        assert child.poll() is None
        assert ops.disk.list() == ["alice/p"]
        [intent] = pending(ops)
        assert intent == {"op": "delete", "repo": "alice/p", "id": "repo-1", "by": "af@child"}
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert ops.replay([]) == 1
    assert ops.disk.list() == [] and pending(ops) == []
