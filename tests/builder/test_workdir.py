"""Work dirs: the checkout of one commit, ownership, removal."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from applikant.builder.models import BuildSpec
from applikant.builder.workdir import (
    CheckoutError,
    _git_config,
    checkout,
    checkout_argvs,
    chown_tree,
    make_workdir,
    remove_tree,
)

from .conftest import Repo, git


def test_make_workdir(tmp_path: Path) -> None:
    root = tmp_path / "builds"
    a = make_workdir(str(root), "build-1/../x y")
    b = make_workdir(str(root), "build-1/../x y")
    assert a != b and os.path.dirname(a) == str(root)
    assert os.path.basename(a).startswith("build-1_.._x_y-")
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o711
    assert stat.S_IMODE(os.stat(a).st_mode) == 0o700


def test_checkout_argv_puts_the_source_after_double_dash() -> None:
    spec = BuildSpec(
        build_id="b",
        repo="r",
        ref="refs/heads/x",
        commit="a" * 40,
        source="--upload-pack=touch /tmp/pwned",
    )
    fetch = checkout_argvs(spec, "/w/src")[1]
    assert fetch[fetch.index("--") + 1] == "--upload-pack=touch /tmp/pwned"


def test_git_config_trusts_only_a_local_source() -> None:
    local = BuildSpec(build_id="b", repo="r", ref="r", commit="a" * 40, source='/srv/a "b".git')
    assert '[safe]\n\tdirectory = "/srv/a \\"b\\".git"' in _git_config(local)
    for url in ("https://example.org/a.git", "git@example.org:a.git"):
        remote = local.model_copy(update={"source": url})
        assert "[safe]" not in _git_config(remote)
    assert "hooksPath = /dev/null" in _git_config(local)


async def test_checkout_of_a_repo_owned_by_someone_else(repo: Repo, tmp_path: Path) -> None:
    commit = repo.commit({"a": "1", ".applikant/build.sh": "true\n"})
    if os.geteuid() == 0:
        chown_tree(str(repo.git_dir), 65534, 65534)  # like the git service user's repos
    src = tmp_path / "w" / "src"
    src.parent.mkdir()
    await checkout(repo.spec(commit), str(src), timeout=30)
    assert git("rev-parse", "HEAD", cwd=src) == commit
    assert (src / "a").read_text() == "1"
    hooks = src / ".git" / "hooks"
    assert not hooks.exists() or os.listdir(hooks) == []
    assert os.listdir(src.parent) == ["src"]  # the private git config is gone


async def test_checkout_errors(repo: Repo, tmp_path: Path) -> None:
    repo.commit({"a": "1"})
    (tmp_path / "w").mkdir()
    with pytest.raises(CheckoutError, match=r"git fetch failed: .*not our ref"):
        await checkout(repo.spec("2" * 40), str(tmp_path / "w" / "src"), timeout=30)
    spec = repo.spec("2" * 40).model_copy(update={"source": str(tmp_path / "nothing.git")})
    (tmp_path / "v").mkdir()
    with pytest.raises(CheckoutError, match="git fetch failed"):
        await checkout(spec, str(tmp_path / "v" / "src"), timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_chown_tree_does_not_follow_symlinks(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("x")
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_text("x")
    (tree / "link").symlink_to(outside)
    chown_tree(str(tree), 65534, 65534)
    assert os.stat(tree / "d" / "f").st_uid == 65534
    assert os.lstat(tree / "link").st_uid == 65534
    assert os.stat(outside).st_uid == 0


def test_remove_tree_whatever_the_modes(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "f").write_text("x")
    (tree / "link").symlink_to(tmp_path)
    for p in (tree / "a" / "b", tree / "a", tree):
        p.chmod(0)
    remove_tree(str(tree))
    assert not tree.exists() and tmp_path.exists()
    remove_tree(str(tree))  # already gone: fine
