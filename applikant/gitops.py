"""Questions about a repository's objects, answered by git itself.

Used where the objects are: on the git host (af, during a push) and by am when
it shares the file system with the repositories. During pre-receive the pushed
objects sit in a quarantine directory that git names in the hook's environment
(GIT_OBJECT_DIRECTORY, GIT_ALTERNATE_OBJECT_DIRECTORIES, GIT_QUARANTINE_PATH);
pass that environment as `env` so that git can see them.

Every function answers a yes/no question, or None when git cannot tell (an
object is missing, the repository is unreadable, git failed or timed out). It
never raises for those: the caller decides what "don't know" means (a
protected branch refuses it). Object ids are checked to be hex before git sees
them, so no argument can be taken for an option.

Stdlib only: imported by the daemons and possibly by short-lived commands.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping

__all__ = [
    "QUARANTINE_VARS",
    "ancestor_argv",
    "git_argv",
    "git_env",
    "has_path",
    "has_path_argv",
    "interpret_ancestor",
    "interpret_has_path",
    "is_fast_forward",
]

#: The variables of a hook's environment that point git at quarantined objects.
QUARANTINE_VARS = (
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_QUARANTINE_PATH",
)

TIMEOUT = 30.0
_OID_RE = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")


def _is_oid(value: object) -> bool:
    return isinstance(value, str) and _OID_RE.match(value) is not None and set(value) != {"0"}


def git_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment to run git in: ours without any GIT_* variable (a hook's
    GIT_DIR would point git elsewhere), plus the quarantine variables of `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    for name in QUARANTINE_VARS:
        value = (env or {}).get(name)
        if isinstance(value, str) and value:
            clean[name] = value
    return clean


def git_argv(git_dir: str) -> list[str]:
    """`git` with the repository `git_dir`, trusted whoever owns it."""
    path = os.path.abspath(git_dir)
    # The repository may belong to another account (am reading af's repos): trust
    # exactly this one. Command-line config counts as protected configuration.
    return ["git", "-c", f"safe.directory={path}", "--git-dir", path]


def ancestor_argv(git_dir: str, old: str, new: str) -> list[str] | None:
    """argv of `git merge-base --is-ancestor old new`, or None for ids git needs not see."""
    if not (_is_oid(old) and _is_oid(new)):
        return None
    return [*git_argv(git_dir), "merge-base", "--is-ancestor", old, new]


def interpret_ancestor(returncode: int) -> bool | None:
    """`merge-base --is-ancestor` exits 0 for yes, 1 for no, anything else on error."""
    return {0: True, 1: False}.get(returncode)


def is_fast_forward(
    git_dir: str, old: str, new: str, env: Mapping[str, str] | None = None
) -> bool | None:
    """True when moving a ref from `old` to `new` is a fast-forward (old is an
    ancestor of new), False when it is not (a force-push), None when git cannot
    tell: a zero id (creation, deletion), a missing object, no repository."""
    argv = ancestor_argv(git_dir, old, new)
    if argv is None or not os.path.isdir(git_dir):
        return None
    try:
        done = subprocess.run(
            argv,
            env=git_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return interpret_ancestor(done.returncode)


def has_path_argv(git_dir: str, commit: str, path: str) -> list[str] | None:
    """argv of `git ls-tree --full-tree commit^{commit} -- path` (one git process
    tells both whether the commit exists and whether it has the path: see
    `interpret_has_path`), or None for a bad id or path."""
    if not _is_oid(commit) or not isinstance(path, str) or not path:
        return None
    if "\n" in path or "\x00" in path or path.startswith("/"):
        return None
    return [*git_argv(git_dir), "ls-tree", "--full-tree", "-z", f"{commit}^{{commit}}", "--", path]


def interpret_has_path(returncode: int, stdout: bytes) -> bool | None:
    """`has_path_argv`'s answer: an entry listed (a file or a directory) is yes,
    none is no; a failure (no such commit, not a commit) is "cannot tell"."""
    if returncode != 0:
        return None
    return bool(stdout.strip(b"\x00\n"))


def has_path(
    git_dir: str, commit: str, path: str, env: Mapping[str, str] | None = None
) -> bool | None:
    """True when `path` (a file or directory, relative to the root) exists in the
    tree of `commit`; False when it does not; None when git cannot tell (no such
    commit, no repository, a malformed argument)."""
    argv = has_path_argv(git_dir, commit, path)
    if argv is None or not os.path.isdir(git_dir):
        return None
    try:
        done = subprocess.run(
            argv,
            env=git_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return interpret_has_path(done.returncode, done.stdout)
