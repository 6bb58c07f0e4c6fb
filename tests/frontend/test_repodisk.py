"""Bare repos on disk, with real git: creation, hooks that fire, rename, delete."""

import os
import subprocess
import threading
from pathlib import Path

import pytest

from applikant.frontend.repodisk import (
    ALL_HOOKS,
    ESSENTIAL_HOOKS,
    CommandRefused,
    RepoDisk,
    RepoDiskError,
    RepoExists,
    RepoNotFound,
)


def git(*args: str, cwd: Path | None = None, input: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.org",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.org",
        GIT_CONFIG_NOSYSTEM="1",
        HOME=str(cwd or "/nonexistent"),
    )
    proc = subprocess.run(
        ["git", *args], cwd=cwd, env=env, input=input, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def hook_program(tmp_path: Path) -> Path:
    """A stand-in for ah: logs the hook name (from argv[0]) and its arguments."""
    log = tmp_path / "hooks.log"
    prog = tmp_path / "bin" / "fake-ah"
    prog.parent.mkdir()
    prog.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> {log}\ncat > /dev/null\nexit 0\n')
    prog.chmod(0o755)
    return prog


@pytest.fixture
def disk(tmp_path: Path, hook_program: Path) -> RepoDisk:
    return RepoDisk(str(tmp_path / "repos"), str(hook_program))


def test_create_layout_hooks_and_config(disk: RepoDisk, hook_program: Path) -> None:
    path = disk.create("team/project")
    assert path == os.path.join(disk.root, "team", "project.git")
    assert git("rev-parse", "--is-bare-repository", cwd=Path(path)).strip() == "true"
    assert git("symbolic-ref", "HEAD", cwd=Path(path)).strip() == "refs/heads/main"
    for hook in ALL_HOOKS:
        assert os.readlink(os.path.join(path, "hooks", hook)) == str(hook_program)
    assert sorted(os.listdir(os.path.join(path, "hooks"))) == sorted(ALL_HOOKS)  # no samples
    assert git("config", "core.logAllRefUpdates", cwd=Path(path)).strip() == "true"
    assert git("config", "core.hooksPath", cwd=Path(path)).strip() == "hooks"
    assert disk.check_hooks("team/project") == []
    assert disk.exists("team/project") and not disk.exists("team/other")
    # Nothing hidden left beside it.
    assert os.listdir(os.path.join(disk.root, "team")) == ["project.git"]


def test_default_branch(disk: RepoDisk) -> None:
    path = disk.create("a/b", default_branch="trunk")
    assert git("symbolic-ref", "HEAD", cwd=Path(path)).strip() == "refs/heads/trunk"
    for bad in ["-x", "a..b", "a b", "x;y", "", ".hidden", "a/"]:
        with pytest.raises(RepoDiskError, match="branch"):
            disk.create("a/c", default_branch=bad)
    assert not disk.exists("a/c")


def test_create_is_idempotent_and_repairs(
    disk: RepoDisk, hook_program: Path, tmp_path: Path
) -> None:
    path = Path(disk.create("team/project"))
    (path / "marker").write_text("keep")
    hooks = path / "hooks"
    (hooks / "update").unlink()
    (hooks / "post-receive").unlink()
    (hooks / "post-receive").write_text("#!/bin/sh\nexit 0\n")
    (hooks / "pre-receive").unlink()
    (hooks / "pre-receive").symlink_to("/bin/true")
    git("config", "--unset", "core.hooksPath", cwd=path)
    git("symbolic-ref", "HEAD", "refs/heads/dev", cwd=path)
    problems = disk.check_hooks("team/project")
    assert len(problems) == 4, problems
    assert any("update is missing" in p for p in problems)
    assert any("post-receive is not a symlink" in p for p in problems)
    assert any("pre-receive points to /bin/true" in p for p in problems)
    assert any("core.hooksPath" in p for p in problems)

    assert disk.create("team/project") == str(path)
    assert disk.check_hooks("team/project") == []
    assert (path / "marker").read_text() == "keep"
    assert git("symbolic-ref", "HEAD", cwd=path).strip() == "refs/heads/dev"  # HEAD untouched


def test_check_hooks_reports_strangers(disk: RepoDisk, tmp_path: Path) -> None:
    path = Path(disk.create("team/project"))
    (path / "hooks" / "reference-transaction").write_text("#!/bin/sh\n")
    assert disk.check_hooks("team/project") == [
        "team/project: unexpected hook reference-transaction"
    ]
    assert disk.check_hooks("team/none") == ["team/none: repository does not exist"]
    other = RepoDisk(disk.root, str(tmp_path / "missing-ah"))
    assert any("not executable" in p for p in other.check_hooks("team/project"))


def test_essential_hooks_only(tmp_path: Path, hook_program: Path) -> None:
    disk = RepoDisk(str(tmp_path / "r"), str(hook_program), hooks=ESSENTIAL_HOOKS)
    path = disk.create("a/b")
    assert sorted(os.listdir(os.path.join(path, "hooks"))) == ["post-receive", "pre-receive"]
    assert disk.check_hooks("a/b") == []
    with pytest.raises(ValueError):
        RepoDisk(str(tmp_path / "r"), str(hook_program), hooks=("pre-commit",))
    with pytest.raises(ValueError):
        RepoDisk(str(tmp_path / "r"), "relative/ah")


def test_push_fires_every_hook(disk: RepoDisk, tmp_path: Path) -> None:
    bare = disk.create("team/project")
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    (work / "f").write_text("hello\n")
    git("add", "f", cwd=work)
    git("commit", "-qm", "one", cwd=work)
    git("push", "-q", bare, "main", "main:other", cwd=work)
    lines = (tmp_path / "hooks.log").read_text().splitlines()
    names = [line.split()[0] for line in lines]
    # pre-receive once, update once per ref, post-receive once, post-update once.
    assert names.count("pre-receive") == 1
    assert names.count("update") == 2
    assert names.count("post-receive") == 1
    assert names.count("post-update") == 1
    assert names.index("pre-receive") < names.index("update") < names.index("post-receive")
    assert "post-update refs/heads/main refs/heads/other" in lines
    # the reflog is kept
    assert os.path.exists(os.path.join(bare, "logs", "refs", "heads", "main"))
    # and a clone gets the content
    git("clone", "-q", bare, str(tmp_path / "clone"), cwd=tmp_path)
    assert (tmp_path / "clone" / "f").read_text() == "hello\n"


def test_list(disk: RepoDisk) -> None:
    assert disk.list() == []
    for r in ["zed/a", "alpha/b", "alpha/a", "m/x.y"]:
        disk.create(r)
    # Things that are not repos are not listed.
    os.makedirs(os.path.join(disk.root, "alpha", "notgit"))
    os.makedirs(os.path.join(disk.root, "alpha", "empty.git"))
    os.makedirs(os.path.join(disk.root, ".trash-x", "y.git"))
    Path(disk.root, "stray-file").write_text("")
    assert disk.list() == ["alpha/a", "alpha/b", "m/x.y", "zed/a"]


def test_rename(disk: RepoDisk) -> None:
    disk.create("team/old")
    disk.create("team/taken")
    with pytest.raises(RepoExists):
        disk.rename("team/old", "team/taken")
    with pytest.raises(RepoNotFound):
        disk.rename("team/none", "team/new")
    new_path = disk.rename("team/old", "other/new")
    assert new_path == os.path.join(disk.root, "other", "new.git")
    assert disk.list() == ["other/new", "team/taken"]
    assert disk.check_hooks("other/new") == []  # absolute links survive the move
    disk.rename("team/taken", "team/kept")
    disk.rename("team/kept", "third/x")
    assert not os.path.exists(os.path.join(disk.root, "team"))  # empty owner dir removed
    with pytest.raises(CommandRefused):
        disk.rename("other/new", "../escape")


def test_delete(disk: RepoDisk) -> None:
    disk.create("team/a")
    disk.create("team/b")
    disk.delete("team/a")
    assert disk.list() == ["team/b"]
    assert not os.path.exists(disk.path("team/a"))
    with pytest.raises(RepoNotFound):
        disk.delete("team/a")
    disk.delete("team/b")
    assert sorted(os.listdir(disk.root)) == [".applikant.lock"]


def test_delete_never_shows_half_a_repo(disk: RepoDisk, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name is gone before the slow removal starts."""
    import applikant.frontend.repodisk as mod

    disk.create("team/a")
    seen = []
    real_rmtree = mod.shutil.rmtree

    def spying_rmtree(path: str, *args: object, **kw: object) -> None:
        seen.append((disk.exists("team/a"), disk.list()))
        real_rmtree(path, *args, **kw)

    monkeypatch.setattr(mod.shutil, "rmtree", spying_rmtree)
    disk.delete("team/a")
    assert seen == [(False, [])]


def test_purge_trash(disk: RepoDisk) -> None:
    disk.create("team/a")
    os.makedirs(os.path.join(disk.root, ".trash-team-x-1234", "objects"))
    os.makedirs(os.path.join(disk.root, "team", ".tmp-y.git-abcd", "objects"))
    assert disk.purge_trash() == 2
    assert disk.list() == ["team/a"]
    assert sorted(os.listdir(os.path.join(disk.root, "team"))) == ["a.git"]


def test_confinement(disk: RepoDisk, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.makedirs(disk.root, exist_ok=True)
    os.symlink(outside, os.path.join(disk.root, "evil"))
    for op in (
        lambda: disk.create("evil/x"),
        lambda: disk.path("evil/x"),
        lambda: disk.exists("evil/x"),
    ):
        with pytest.raises(CommandRefused, match="not its own directory"):
            op()
    assert os.listdir(outside) == []
    disk.create("team/a")
    with pytest.raises(CommandRefused):
        disk.rename("team/a", "evil/a")
    assert disk.exists("team/a")
    # A link inside the root is no repository of its own either, nor listed.
    os.symlink(os.path.join("..", "team", "a.git"), os.path.join(disk.root, "team", "alias.git"))
    with pytest.raises(CommandRefused, match="not its own directory"):
        disk.exists("team/alias")
    assert disk.list() == ["team/a"]
    for bad in ["../x", "a/b/c", "/etc/passwd", ".x/y", "a/b.git"]:
        with pytest.raises(CommandRefused):
            disk.create(bad)


def test_create_replaces_leftover_non_repo_dir(disk: RepoDisk) -> None:
    os.makedirs(os.path.join(disk.root, "team", "a.git", "junk"))
    disk.create("team/a")
    assert disk.check_hooks("team/a") == []


def test_concurrent_creates(disk: RepoDisk) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            disk.create("team/same")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert disk.list() == ["team/same"]
    assert disk.check_hooks("team/same") == []


def test_git_env_does_not_leak(
    disk: RepoDisk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """af running under GIT_DIR (say from a hook) must still create the right repo."""
    elsewhere = tmp_path / "elsewhere.git"
    monkeypatch.setenv("GIT_DIR", str(elsewhere))
    disk.create("team/a")
    assert not elsewhere.exists()
    assert disk.check_hooks("team/a") == []
