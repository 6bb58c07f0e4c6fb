"""gitloose: a "no" read from loose objects only where git would say the same;
everything else left to git. Every case is checked against git's own answer."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from applikant import gitasync, gitloose, gitops
from tests.manager.gitrepo import git

SCRIPT = ".applikant/build.sh"


def commit(work: Path, files: dict[str, str]) -> str:
    for name, content in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(content)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "c", cwd=work)
    return git("rev-parse", "HEAD", cwd=work)


def new_repo(tmp: Path, *args: str) -> Path:
    work = tmp / "work"
    git("init", "-q", *args, str(work), cwd=tmp)
    return work


async def agree(git_dir: Path, oid: str, path: str, fast: bool | None) -> bool | None:
    """gitloose's answer is `fast`, and has_path answers as git does."""
    assert gitloose.surely_lacks(str(git_dir), oid, path) is fast
    truth = gitops.has_path(str(git_dir), oid, path)
    assert await gitasync.has_path(str(git_dir), oid, path, None) is truth
    if fast:
        assert truth is False
    return truth


@pytest.mark.parametrize("fmt", ["sha1", "sha256"])
async def test_a_loose_commit_without_the_directory_is_a_no(tmp_path: Path, fmt: str) -> None:
    work = new_repo(tmp_path, f"--object-format={fmt}")
    oid = commit(work, {"README": "x\n", "src/a.c": "int a;\n"})
    assert await agree(work / ".git", oid, SCRIPT, True) is False
    assert await agree(work / ".git", oid, "README", None) is True
    assert await agree(work / ".git", oid, "src", None) is True


async def test_a_loose_commit_with_it_or_alike_is_left_to_git(tmp_path: Path) -> None:
    work = new_repo(tmp_path)
    with_it = commit(work, {SCRIPT: "true\n"})
    assert await agree(work / ".git", with_it, SCRIPT, None) is True
    git("rm", "-q", "-r", ".applikant", cwd=work)
    other = commit(work, {".applikant/other": "x\n"})
    assert await agree(work / ".git", other, SCRIPT, None) is False
    git("rm", "-q", "-r", ".applikant", cwd=work)
    upper = commit(work, {".APPLIKANT/build.sh": "true\n"})
    assert await agree(work / ".git", upper, SCRIPT, None) is False
    for pattern in (".applikant/*.sh", ".appl?kant", ":(icase).applikant"):
        assert gitloose.surely_lacks(str(work / ".git"), upper, pattern) is None


async def test_packed_objects_are_left_to_git(tmp_path: Path) -> None:
    work = new_repo(tmp_path)
    oid = commit(work, {"README": "x\n"})
    git("repack", "-adq", cwd=work)
    git("prune-packed", cwd=work)
    assert await agree(work / ".git", oid, SCRIPT, None) is False


@pytest.mark.parametrize("packed", [False, True])
async def test_replace_refs_are_left_to_git(tmp_path: Path, packed: bool) -> None:
    work = new_repo(tmp_path)
    without = commit(work, {"README": "x\n"})
    with_it = commit(work, {SCRIPT: "true\n"})
    git("replace", without, with_it, cwd=work)
    if packed:
        git("pack-refs", "--all", cwd=work)
        assert not (work / ".git" / "refs" / "replace").exists() or not list(
            (work / ".git" / "refs" / "replace").iterdir()
        )
    # git reads the replacement, which has the script: a "no" here would be wrong
    assert await agree(work / ".git", without, SCRIPT, None) is True


async def test_other_objects_and_broken_files_are_left_to_git(tmp_path: Path) -> None:
    work = new_repo(tmp_path)
    oid = commit(work, {"README": "x\n"})
    git_dir = work / ".git"
    git("tag", "-a", "-m", "t", "v1", oid, cwd=work)
    tag = git("rev-parse", "v1", cwd=work)
    tree = git("rev-parse", f"{oid}^{{tree}}", cwd=work)
    assert gitloose.surely_lacks(str(git_dir), tag, SCRIPT) is None  # a tag, not a commit
    assert gitloose.surely_lacks(str(git_dir), tree, SCRIPT) is None
    assert gitloose.surely_lacks(str(git_dir), "1" * 40, SCRIPT) is None  # missing
    assert gitloose.surely_lacks(str(git_dir), "xyz", SCRIPT) is None
    assert gitloose.surely_lacks(str(tmp_path / "nothing"), oid, SCRIPT) is None
    loose = git_dir / "objects" / oid[:2] / oid[2:]
    loose.chmod(0o644)
    loose.write_bytes(zlib.compress(b"commit 99\0tree " + tree.encode() + b"\n"))  # bad size
    assert gitloose.surely_lacks(str(git_dir), oid, SCRIPT) is None
    loose.write_bytes(b"not zlib")
    assert gitloose.surely_lacks(str(git_dir), oid, SCRIPT) is None


async def test_quarantined_pushes_are_asked_of_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = new_repo(tmp_path)
    oid = commit(work, {"README": "x\n"})

    def never(*args: object) -> bool:
        raise AssertionError("the loose objects were read for a quarantined push")

    monkeypatch.setattr(gitloose, "surely_lacks", never)
    env = {"GIT_QUARANTINE_PATH": str(work / ".git" / "objects")}
    assert await gitasync.has_path(str(work / ".git"), oid, SCRIPT, env) is False


async def test_a_large_packed_refs_is_left_to_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = new_repo(tmp_path)
    oid = commit(work, {"README": "x\n"})
    git("pack-refs", "--all", cwd=work)
    assert gitloose.surely_lacks(str(work / ".git"), oid, SCRIPT) is True
    size = (work / ".git" / "packed-refs").stat().st_size
    monkeypatch.setattr(gitloose, "PACKED_REFS_MAX", size - 1)
    assert await agree(work / ".git", oid, SCRIPT, None) is False
