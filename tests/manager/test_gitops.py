"""applikant.gitops: fast-forward and path questions answered by real git."""

from __future__ import annotations

from pathlib import Path

import pytest

from applikant import gitops
from tests.manager.gitrepo import ZERO, Repo, git, make_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    return make_repo(tmp_path_factory.mktemp("gitops"))


def test_fast_forward(repo: Repo) -> None:
    bare = str(repo.bare)
    assert gitops.is_fast_forward(bare, repo.a, repo.b) is True
    assert gitops.is_fast_forward(bare, repo.b, repo.c) is False
    assert gitops.is_fast_forward(bare, repo.b, repo.b) is True


def test_unknown_is_none(repo: Repo, tmp_path: Path) -> None:
    bare = str(repo.bare)
    assert gitops.is_fast_forward(bare, ZERO, repo.b) is None  # creation
    assert gitops.is_fast_forward(bare, repo.b, ZERO) is None  # deletion
    assert gitops.is_fast_forward(bare, repo.a, "1" * 40) is None  # missing object
    assert gitops.is_fast_forward(bare, "--help", repo.b) is None  # never an option
    assert gitops.is_fast_forward(bare, repo.a.upper(), repo.b) is None
    assert gitops.is_fast_forward(str(tmp_path / "nothing"), repo.a, repo.b) is None
    assert gitops.is_fast_forward(str(tmp_path), repo.a, repo.b) is None  # not a repo


def test_quarantined_objects_are_seen_with_the_hook_env(repo: Repo, tmp_path: Path) -> None:
    # A commit whose objects sit only in a "quarantine" directory, as during pre-receive.
    quarantine = tmp_path / "incoming"
    quarantine.mkdir()
    work = repo.work
    git("checkout", "-q", "main", cwd=work)
    env = {
        "GIT_OBJECT_DIRECTORY": str(quarantine),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(work / ".git" / "objects"),
    }
    (work / "README").write_text("d\n")
    git("commit", "-q", "-am", "D", cwd=work, env=env)
    d = git("rev-parse", "HEAD", cwd=work)
    bare = str(repo.bare)
    assert gitops.is_fast_forward(bare, repo.b, d) is None
    hook_env = {
        "GIT_OBJECT_DIRECTORY": str(quarantine),
        "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(repo.bare / "objects"),
        "GIT_DIR": "/somewhere/else",
        "UNRELATED": "x",
    }
    assert gitops.is_fast_forward(bare, repo.b, d, env=hook_env) is True
    assert gitops.is_fast_forward(bare, repo.c, d, env=hook_env) is False
    assert gitops.has_path(bare, d, "README", env=hook_env) is True


def test_has_path(repo: Repo) -> None:
    bare = str(repo.bare)
    assert gitops.has_path(bare, repo.a, ".applikant/build.sh") is True
    assert gitops.has_path(bare, repo.a, ".applikant") is True
    assert gitops.has_path(bare, repo.a, "missing.txt") is False
    assert gitops.has_path(bare, "1" * 40, "README") is None
    assert gitops.has_path(bare, repo.a, "") is None
    assert gitops.has_path(bare, repo.a, "/abs") is None
