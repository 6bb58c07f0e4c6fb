"""gitread on a real bare repository: refs, log, trees, blobs, refused refs and paths."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from applikant.web import gitread
from harness.gitenv import git_env


@pytest.fixture
def bare(tmp_path: Path) -> str:
    env = git_env(tmp_path)
    work = tmp_path / "w"

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=work, env=env, check=True, capture_output=True)

    work.mkdir()
    git("init", "-q", "-b", "main")
    (work / "README.md").write_text("# Title\n")
    (work / "dir").mkdir()
    (work / "dir" / "a.txt").write_text("a\n")
    (work / "bin.dat").write_bytes(b"\x00\x01" * 10)
    (work / "big.txt").write_text("x" * 1000)
    git("add", ".")
    git("commit", "-q", "-m", "one")
    git("tag", "v1")
    git("checkout", "-q", "-b", "feature/x")
    git("commit", "-q", "--allow-empty", "-m", "two")
    root = tmp_path / "root"
    (root / "o").mkdir(parents=True)
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(root / "o" / "r.git")], env=env, check=True
    )
    return str(root)


async def test_refs_log_tree_blob(bare: str) -> None:
    path = gitread.repo_path(bare, "o/r")
    refs = {r.name: r.kind for r in await gitread.refs(path)}
    assert refs == {"main": "branch", "feature/x": "branch", "v1": "tag"}
    commit = await gitread.resolve(path, "feature/x")
    assert [c.subject for c in await gitread.log(path, commit)] == ["two", "one"]
    entries = await gitread.ls_tree(path, commit)
    assert next(e.name for e in entries) == "dir"
    assert [e.name for e in await gitread.ls_tree(path, commit, "dir/")] == ["a.txt"]
    blob = await gitread.read_blob(path, commit, "dir/a.txt")
    assert blob.text() == "a\n" and not blob.binary
    assert (await gitread.read_blob(path, commit, "bin.dat")).binary
    part = await gitread.read_blob(path, commit, "big.txt", limit=100)
    assert part.truncated and len(part.data) == 100 and part.size == 1000
    readme = await gitread.find_readme(path, commit)
    assert readme is not None and readme.path == "README.md"


async def test_refusals(bare: str) -> None:
    path = gitread.repo_path(bare, "o/r")
    commit = await gitread.resolve(path, "main")
    for bad in ("../x", "/etc/passwd", "dir/../../x", "a\x00b", "a\\b"):
        with pytest.raises(gitread.GitReadError) as e:
            await gitread.read_blob(path, commit, bad)
        assert e.value.status == 400
    for ref in ("--upload-pack=x", "main..v1", "a@{1}", "x" * 300, "a b"):
        with pytest.raises(gitread.GitReadError) as e:
            await gitread.resolve(path, ref)
        assert e.value.status == 400
    with pytest.raises(gitread.GitReadError) as e:
        await gitread.resolve(path, "nope")
    assert e.value.status == 404
    with pytest.raises(gitread.GitReadError) as e:
        await gitread.ls_tree(path, commit, "README.md")
    assert e.value.status == 404
    for name in ("../x", "o/../../x", "o", "o/r/s"):
        with pytest.raises(ValueError):
            gitread.repo_path(bare, name)


def test_a_symlinked_repository_is_not_read(bare: str) -> None:
    """bob/alias.git -> ../o/r.git is not bob's repository: aw refuses it (404)."""
    root = Path(bare)
    (root / "bob").mkdir()
    (root / "bob" / "alias.git").symlink_to(Path("..") / "o" / "r.git")
    (root / "carol").symlink_to("o")
    for name in ("bob/alias", "carol/r"):
        with pytest.raises(gitread.GitReadError) as e:
            gitread.repo_path(bare, name)
        assert e.value.status == 404 and isinstance(e.value, ValueError)
    assert gitread.repo_path(bare, "o/r") == str(root.resolve() / "o" / "r.git")


async def test_directory_is_kept_whole_at_a_commit(bare: str) -> None:
    path = gitread.repo_path(bare, "o/r")
    commit = await gitread.resolve(path, "main")
    root = await gitread.directory(path, commit, "", limit=10)
    assert [e.name for e in root.entries] == ["dir", "big.txt", "bin.dat", "README.md"]
    assert [c.subject for c in root.latest] == ["one"]
    assert set(root.last) == {"dir", "README.md", "big.txt", "bin.dat"}
    assert root.readme is not None and root.readme.text() == "# Title\n"
    assert await gitread.directory(path, commit, "", limit=10) is root  # one cache lookup
    assert (await gitread.directory(path, commit, "", limit=1)) is not root
    sub = await gitread.directory(path, commit, "dir")
    assert [e.name for e in sub.entries] == ["a.txt"] and sub.readme is None
    # A branch name is no key: what it names now is read.
    by_name = await gitread.directory(path, "main", "")
    assert by_name is not await gitread.directory(path, "main", "")
    assert [e.name for e in by_name.entries] == [e.name for e in root.entries]
    with pytest.raises(gitread.GitReadError) as e:
        await gitread.directory(path, commit, "nothing")
    assert e.value.status == 404


async def test_a_repository_made_again_under_its_name_shares_nothing_cached(
    bare: str, tmp_path: Path
) -> None:
    """o/r deleted and made again (empty, another am id): what aw read of the old
    one at a full commit id is not served for the new one."""
    from applikant.frontend.repoops import ID_FILE

    assert gitread.ID_FILE == ID_FILE  # aw and af name the id file alike
    path = gitread.repo_path(bare, "o/r")
    Path(path, ID_FILE).write_text("repo-1\n")
    commit = await gitread.resolve(path, "main")
    assert await gitread.resolve(path, commit) == commit  # remembered now
    assert [e.name for e in await gitread.ls_tree(path, commit, "dir/")] == ["a.txt"]
    assert (await gitread.read_blob(path, commit, "dir/a.txt")).text() == "a\n"
    assert (await gitread.directory(path, commit, "dir")).entries[0].name == "a.txt"

    shutil.rmtree(path)
    await trio.run_process(
        ["git", "init", "-q", "--bare", path], env=git_env(tmp_path), capture_stdout=True
    )
    Path(path, ID_FILE).write_text("repo-2\n")
    reads = (
        lambda: gitread.resolve(path, commit),
        lambda: gitread.ls_tree(path, commit, "dir/"),
        lambda: gitread.read_blob(path, commit, "dir/a.txt"),
        lambda: gitread.directory(path, commit, "dir"),
    )
    for read in reads:
        with pytest.raises(gitread.GitReadError) as e:
            await read()
        assert e.value.status == 404
