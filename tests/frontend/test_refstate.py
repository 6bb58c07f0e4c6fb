"""Which updates of a push happened, read from the refs and reflogs on disk."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from applikant.frontend.refstate import current_refs, moved_refs
from applikant.frontend.repodisk import RepoDisk

ZERO = "0" * 40


class Repo:
    def __init__(self, tmp: Path) -> None:
        disk = RepoDisk(str(tmp / "repos"), "/bin/true")  # logAllRefUpdates=true, as af sets
        self.git_dir = disk.create("team/p")

    def git(self, *args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@e",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@e",
            "PATH": "/usr/bin:/bin",
        }
        return subprocess.run(
            ["git", "--git-dir", self.git_dir, *args],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    def commit(self, parent: str | None = None) -> str:
        tree = self.git("write-tree")
        return self.git("commit-tree", tree, *(["-p", parent] if parent else []), "-m", "c")


def update(ref: str, old: str, new: str) -> dict[str, str]:
    return {"ref": ref, "old": old, "new": new}


def test_updates_that_happened(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    a = repo.commit()
    b = repo.commit(a)
    c = repo.commit(b)
    repo.git("update-ref", "refs/heads/main", a)
    repo.git("update-ref", "refs/heads/gone", a)
    push = [
        update("refs/heads/main", a, b),  # happened, then moved on to c
        update("refs/heads/new", ZERO, c),  # happened
        update("refs/heads/gone", a, ZERO),  # a deletion that happened
        update("refs/heads/never", ZERO, b),  # did not happen
        update("refs/tags/v1", ZERO, a),  # did not happen
    ]
    repo.git("update-ref", "refs/heads/main", b, a)
    repo.git("update-ref", "refs/heads/main", c, b)
    repo.git("update-ref", "refs/heads/new", c)
    repo.git("update-ref", "-d", "refs/heads/gone")
    assert current_refs(repo.git_dir, ["refs/heads/main", "refs/heads/x"]) == {"refs/heads/main": c}
    assert moved_refs(repo.git_dir, push) == push[:3]


def test_a_push_whose_refs_never_moved(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    a = repo.commit()
    b = repo.commit(a)
    repo.git("update-ref", "refs/heads/main", a)
    assert moved_refs(repo.git_dir, [update("refs/heads/main", a, b)]) == []
    assert moved_refs(repo.git_dir, [update("refs/heads/main", a, ZERO)]) == []


def test_a_missing_repository_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        moved_refs(str(tmp_path / "nope.git"), [update("refs/heads/main", ZERO, "1" * 40)])
