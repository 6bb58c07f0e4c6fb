"""applikant.gitops: fast-forward and path questions answered by real git."""

from __future__ import annotations

from pathlib import Path

import pytest

from applikant import gitasync, gitops
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


async def test_has_path(repo: Repo, tmp_path: Path) -> None:
    """The same answers from gitops (blocking) and gitasync (af's and am's loop)."""
    bare = str(repo.bare)
    tree = git("rev-parse", f"{repo.a}^{{tree}}", cwd=repo.work)
    cases = [
        (repo.a, ".applikant/build.sh", True),
        (repo.a, ".applikant", True),  # a directory
        (repo.a, "missing.txt", False),
        (repo.a, ".applikant/build.sh/x", False),  # below a file
        (repo.a, ".applikant/missing", False),
        ("1" * 40, "README", None),  # no such commit
        (tree, "README", None),  # not a commit
        (repo.a, "", None),
        (repo.a, "/abs", None),
        (repo.a, "a\nb", None),
    ]
    for commit, path, wanted in cases:
        assert gitops.has_path(bare, commit, path) is wanted, (commit, path)
        assert await gitasync.has_path(bare, commit, path, None) is wanted, (commit, path)
    assert gitops.has_path(str(tmp_path / "nothing"), repo.a, "README") is None
    assert await gitasync.has_path(str(tmp_path / "nothing"), repo.a, "README", None) is None
