"""git from the daemons' trio loop: a git process that never blocks the loop,
is bounded in time, and dies with its task when the call that needs it is
cancelled (a pusher who gave up, a node that went down).

The questions themselves (their argv and what the answers mean) are
applikant.gitops's; this module only runs them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

import trio

from applikant import gitops

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
    or None when it could not start or took longer than `timeout`."""
    command = list(argv)
    quiet = subprocess.DEVNULL
    with trio.move_on_after(timeout):
        try:
            if capture:
                return await trio.run_process(
                    command,
                    env=gitops.git_env(env),
                    check=False,
                    stdin=b"",
                    capture_stdout=True,
                    stderr=quiet,
                )
            return await trio.run_process(
                command, env=gitops.git_env(env), check=False, stdin=b"", stdout=quiet, stderr=quiet
            )
        except OSError:
            return None
    return None


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
    done = await run(argv, env, timeout=timeout, capture=True)
    return None if done is None else gitops.interpret_has_path(done.returncode, done.stdout)
