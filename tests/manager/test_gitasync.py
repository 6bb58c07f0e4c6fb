"""gitasync.run, the daemons' way to run git: output, exit status, the cleaned
environment, and a process that never outlives its deadline or its task."""

from __future__ import annotations

import os
from pathlib import Path

import trio

from applikant import gitasync
from harness.wait import wait_until_async


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_output_status_and_stdin() -> None:
    done = await gitasync.run(["sh", "-c", "echo hi; cat; exit 3"], None, capture=True)
    assert done is not None and (done.returncode, done.stdout) == (3, b"hi\n")
    done = await gitasync.run(["sh", "-c", "echo hi >&2; exit 0"], None)
    assert done is not None and done.returncode == 0 and done.stdout is None
    big = await gitasync.run(["head", "-c", "300000", "/dev/zero"], None, capture=True)
    assert big is not None and big.stdout == bytes(300000)  # more than a pipe holds
    assert await gitasync.run(["/nonexistent/git"], None) is None


async def test_the_environment_is_ours_without_git_variables_plus_the_quarantine() -> None:
    os.environ["GIT_DIR"] = "/elsewhere"
    try:
        done = await gitasync.run(
            ["sh", "-c", 'echo "$GIT_OBJECT_DIRECTORY|$GIT_DIR|$HOME"'],
            {"GIT_OBJECT_DIRECTORY": "/q", "GIT_DIR": "/x", "OTHER": "y"},
            capture=True,
        )
    finally:
        del os.environ["GIT_DIR"]
    assert done is not None and done.stdout == f"/q||{os.environ.get('HOME', '')}\n".encode()


async def test_sigpipe_is_not_ignored_in_the_child() -> None:
    done = await gitasync.run(["sh", "-c", "grep SigIgn /proc/$$/status"], None, capture=True)
    assert done is not None and done.returncode == 0
    ignored = int(done.stdout.split()[1], 16)
    assert not ignored & (1 << (13 - 1)), hex(ignored)  # SIGPIPE


async def test_killed_at_its_deadline(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    start = trio.current_time()
    done = await gitasync.run(
        ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], None, timeout=0.5, capture=True
    )
    assert done is None and trio.current_time() - start < 20
    assert _gone(int(pid_file.read_text()))


async def test_killed_with_its_task(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    async with trio.open_nursery() as nursery:

        async def call() -> None:
            await gitasync.run(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 30"], None)

        nursery.start_soon(call)
        await wait_until_async(
            lambda: pid_file.exists() and pid_file.read_text().strip(), what="the pid"
        )
        nursery.cancel_scope.cancel()
    assert _gone(int(pid_file.read_text()))
