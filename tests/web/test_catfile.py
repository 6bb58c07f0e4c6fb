"""The long-lived `git cat-file` per repository: right answers, new commits seen
at once, bounded, closed when idle, replaced when killed or cut short."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from applikant.web import catfile, gitread
from harness.gitenv import git_env


def _repo(tmp_path: Path, name: str) -> tuple[str, Path, dict[str, str]]:
    env = git_env(tmp_path)
    work = tmp_path / f"w-{name}"
    work.mkdir()
    run = {"cwd": work, "env": env, "check": True, "capture_output": True}
    subprocess.run(["git", "init", "-q", "-b", "main"], **run)  # type: ignore[call-overload]
    (work / "a.txt").write_text(f"{name} one\n")
    (work / "big.bin").write_bytes(b"\x00" + os.urandom(600_000))
    subprocess.run(["git", "add", "."], **run)  # type: ignore[call-overload]
    subprocess.run(["git", "commit", "-q", "-m", "one"], **run)  # type: ignore[call-overload]
    bare = tmp_path / "root" / "o" / f"{name}.git"
    bare.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], env=env, check=True)
    subprocess.run(["git", "remote", "add", "origin", str(bare)], **run)  # type: ignore[call-overload]
    return str(bare), work, env


def _head(bare: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        ["git", f"--git-dir={bare}", "rev-parse", "main"], env=env, check=True, capture_output=True
    )
    return out.stdout.decode().strip()


def _push(work: Path, bare: str, env: dict[str, str]) -> str:
    """A new commit on main, pushed to `bare`; its id."""
    (work / "a.txt").write_text("two\n")
    subprocess.run(["git", "commit", "-qam", "two"], cwd=work, env=env, check=True)
    subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, env=env, check=True)
    return _head(bare, env)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


async def test_reads_and_sees_a_new_commit_at_once(tmp_path: Path) -> None:
    bare, work, env = _repo(tmp_path, "r")
    first = _head(bare, env)
    found = await catfile.read(bare, f"{first}:a.txt", 100)
    assert found is not None and found[1:] == ("blob", 6, b"r one\n")
    assert await catfile.read(bare, f"{first}:nope.txt", 100) is None
    assert (await catfile.read(bare, f"{first}:", 100) or ("", ""))[1] == "tree"
    big = await catfile.read(bare, f"{first}:big.bin", 1000)
    assert big is not None and big[2] == 600_001 and len(big[3]) == 1000
    (pid,) = catfile.pids(bare)
    # A push after the process started: the same process finds the new objects.
    second = _push(work, bare, env)
    found = await catfile.read(bare, f"{second}:a.txt", 100)
    assert found is not None and found[3] == b"two\n"
    assert catfile.pids(bare) == [pid]


async def test_a_killed_process_is_replaced(tmp_path: Path) -> None:
    bare, _work, env = _repo(tmp_path, "k")
    commit = _head(bare, env)
    assert await catfile.read(bare, f"{commit}:a.txt", 100) is not None
    (pid,) = catfile.pids(bare)
    os.kill(pid, signal.SIGKILL)
    found = await catfile.read(bare, f"{commit}:a.txt", 100)
    assert found is not None and found[3] == b"k one\n"
    (new,) = catfile.pids(bare)
    assert new != pid


async def test_cancelled_mid_answer_leaves_no_stale_bytes(tmp_path: Path) -> None:
    bare, _work, env = _repo(tmp_path, "c")
    commit = _head(bare, env)
    for delay in (0, 0.0001, 0.0005, 0.001, 0.003):
        with trio.move_on_after(delay):
            await catfile.read(bare, f"{commit}:big.bin", 700_000)
        # Whatever the cancelled read left in the pipe, the next answer is right.
        found = await catfile.read(bare, f"{commit}:a.txt", 100)
        assert found is not None and found[3] == b"c one\n"


async def test_bounded_and_closed_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catfile, "MAX_PROCESSES", 2)
    monkeypatch.setattr(catfile, "IDLE", 0.4)
    repos = [_repo(tmp_path, f"b{i}") for i in range(3)]
    pids = []
    for bare, _work, env in repos:
        assert await catfile.read(bare, f"{_head(bare, env)}:a.txt", 10) is not None
        pids.extend(catfile.pids(bare))
    assert len(set(pids)) == 3
    assert catfile.pids(repos[0][0]) == []  # the least recently used went
    assert not _alive(pids[0])
    with trio.fail_after(10):
        while any(catfile.pids(bare) for bare, _w, _e in repos):  # noqa: ASYNC110 - the sweeper's own clock
            await trio.sleep(0.05)
    assert not any(_alive(p) for p in pids)


async def test_gitread_through_the_pipe_and_refusals(tmp_path: Path) -> None:
    bare, _work, env = _repo(tmp_path, "g")
    commit = _head(bare, env)
    blob = await gitread.read_blob(bare, commit, "a.txt")
    assert blob.text() == "g one\n" and blob.id
    assert await gitread.object_kind(bare, commit, "") == "tree"
    assert await gitread.object_kind(bare, commit, "nope") is None
    with pytest.raises(gitread.GitReadError) as e:
        await gitread.read_blob(bare, commit, "../a.txt")
    assert e.value.status == 400
    with pytest.raises(gitread.GitReadError) as e:
        await gitread.read_object(bare, f"{commit}:a\nb", 10)
    assert e.value.status == 404
    with pytest.raises(gitread.GitReadError) as e:
        await gitread.read_object(str(tmp_path / "nothing.git"), f"{commit}:a.txt", 10)
    assert e.value.status == 404


async def test_a_replaced_repository_gets_a_new_process(tmp_path: Path) -> None:
    bare, _work, env = _repo(tmp_path, "d")
    old = _head(bare, env)
    assert await catfile.read(bare, f"{old}:a.txt", 100) is not None
    (pid,) = catfile.pids(bare)
    # Deleted and made again under the same name, with other history.
    shutil.rmtree(bare)
    (tmp_path / "again").mkdir()
    other, _w, _e = _repo(tmp_path / "again", "d")
    os.rename(other, bare)
    assert await catfile.read(bare, f"{old}:a.txt", 100) is None  # not the old one's
    found = await catfile.read(bare, f"{_head(bare, env)}:a.txt", 100)
    assert found is not None and catfile.pids(bare) != [pid]
