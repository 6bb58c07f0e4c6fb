"""git from the daemons' trio loop: a git process that never blocks the loop,
is bounded in time, and dies with its task when the call that needs it is
cancelled (a pusher who gave up, a node that went down).

The questions themselves (their argv and what the answers mean) are
applikant.gitops's; this module only runs them.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import trio

from applikant import gitloose, gitops
from applikant.node import lean

__all__ = ["TIMEOUT", "has_path", "is_fast_forward", "run"]

TIMEOUT = 30.0


async def run(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    *,
    timeout: float = TIMEOUT,
    capture: bool = False,
) -> subprocess.CompletedProcess[bytes] | None:
    """Run git (`argv`) with the quarantine variables of `env`; its result,
    or None when it could not start or took longer than `timeout` (it is
    killed then, as when the calling task is cancelled)."""
    with trio.move_on_after(timeout):
        try:
            return await _spawn(list(argv), gitops.git_env(env), capture)
        except OSError:
            return None
    return None


def _start(argv: list[str], env: dict[str, str], capture: bool) -> tuple[int, int]:
    """(pid, the read end of its stdout or -1): `argv` started with posix_spawn,
    which returns once the child has exec'd (no Popen in a worker thread: that
    costs the daemon three times the CPU per process), stdin and stderr on
    /dev/null."""
    read_end = write_end = -1
    null = os.devnull
    actions: list[tuple[Any, ...]] = [
        (os.POSIX_SPAWN_OPEN, 0, null, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, null, os.O_WRONLY, 0),
    ]
    if capture:
        read_end, write_end = os.pipe()  # close-on-exec: no other child inherits them
        actions.append((os.POSIX_SPAWN_DUP2, write_end, 1))
    else:
        actions.append((os.POSIX_SPAWN_OPEN, 1, null, os.O_WRONLY, 0))
    try:
        pid = os.posix_spawnp(
            argv[0], argv, env, file_actions=actions, setsigdef=lean.IGNORED_SIGNALS
        )
    except BaseException:
        if capture:
            os.close(read_end)
        raise
    finally:
        if capture:
            os.close(write_end)
    return pid, read_end


async def _spawn(
    argv: list[str], env: dict[str, str], capture: bool
) -> subprocess.CompletedProcess[bytes]:
    """Run `argv` to its end (stdout read when `capture`), waited for through a
    pidfd; killed if the task is cancelled, and reaped only once its pidfd says
    it has ended, so a process slow to die (a hung file system) never blocks
    the loop."""
    pid, read_end = _start(argv, env, capture)
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:  # (out of descriptors: nothing to wait on without blocking)
        os.kill(pid, signal.SIGKILL)
        _exit_code(pid)
        if capture:
            os.close(read_end)
        raise
    ended = False
    out = None
    try:
        if capture:
            async with trio.lowlevel.FdStream(read_end) as stream:
                chunks = []
                while chunk := await stream.receive_some(65536):
                    chunks.append(chunk)
                out = b"".join(chunks)
        await trio.lowlevel.wait_readable(pidfd)
        ended = True
    finally:
        try:
            if not ended:  # cancelled or timed out: it must not outlive the call
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                with trio.CancelScope(shield=True):
                    await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
            code = _exit_code(pid)
    return subprocess.CompletedProcess(argv, code, out, None)


def _exit_code(pid: int) -> int:
    """Reap `pid`, which has ended (its pidfd said so) or was just SIGKILLed."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


async def is_fast_forward(
    git_dir: str, old: str, new: str, env: Mapping[str, str] | None, timeout: float = TIMEOUT
) -> bool | None:
    """gitops.is_fast_forward without blocking the loop: whether `old` is an
    ancestor of `new`, None when git cannot tell."""
    argv = gitops.ancestor_argv(git_dir, old, new)
    if argv is None:
        return None
    done = await run(argv, env, timeout=timeout)
    return None if done is None else gitops.interpret_ancestor(done.returncode)


async def has_path(
    git_dir: str, commit: str, path: str, env: Mapping[str, str] | None, timeout: float = TIMEOUT
) -> bool | None:
    """gitops.has_path without blocking the loop (nor a worker thread: a fork
    from a thread of a large daemon holds the GIL for milliseconds)."""
    argv = gitops.has_path_argv(git_dir, commit, path)
    if argv is None or not os.path.isdir(git_dir):
        return None
    # A small push's objects are loose files: a "no" read there spares git.
    if not any((env or {}).get(var) for var in gitops.QUARANTINE_VARS):
        lacks = await trio.to_thread.run_sync(gitloose.surely_lacks, git_dir, commit, path)
        if lacks:
            return False
    done = await run(argv, env, timeout=timeout, capture=True)
    return None if done is None else gitops.interpret_has_path(done.returncode, done.stdout)
