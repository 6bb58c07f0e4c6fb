"""Which of a push's ref updates happened: asked of the repository once the push is over.

af writes a push's intent before any ref moves. When the push's post-receive
never reached am (git, ``as`` or af killed in between), af settles the intent
once the push's receive-pack is gone, from the refs on disk:

* a ref that now points at the new id moved;
* a ref whose reflog holds the line ``<old> <new>`` moved, and moved again
  since (every managed repository logs all ref updates, see repodisk.py);
* a deletion happened when the ref is gone;
* anything else did not happen (the push was refused, or died before its refs moved).

A push with no update that happened is discarded; the others are recorded with
the updates that happened.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from typing import Any

from applikant import gitops

__all__ = ["current_refs", "moved_refs"]

GIT_TIMEOUT = 30
_ZERO = frozenset({"0" * 40, "0" * 64})


def current_refs(git_dir: str, names: Sequence[str]) -> dict[str, str]:
    """``{ref: id}`` of those of ``names`` that exist in ``git_dir``.

    Raises ``OSError`` when git cannot be run or fails (the repository is gone).
    """
    wanted = set(names)
    if not wanted:
        return {}
    path = os.path.abspath(git_dir)
    proc = subprocess.run(
        [
            "git",
            *("-c", f"safe.directory={path}", "--git-dir", path),
            *("for-each-ref", "--format=%(objectname) %(refname)"),
        ],
        env=gitops.git_env(None),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT,
    )
    if proc.returncode != 0:
        raise OSError(f"git for-each-ref failed in {git_dir}: {proc.stderr.strip()[:200]}")
    found = {}
    for line in proc.stdout.splitlines():
        oid, _, ref = line.partition(" ")
        if ref in wanted:
            found[ref] = oid
    return found


def _in_reflog(git_dir: str, ref: str, old: str, new: str) -> bool:
    try:
        with open(os.path.join(git_dir, "logs", ref), "rb") as f:
            prefix = f"{old} {new} ".encode()
            return any(line.startswith(prefix) for line in f)
    except OSError:
        return False


def moved_refs(git_dir: str, refs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The updates of ``refs`` (``{"ref", "old", "new"}``) that happened; see the
    module docstring. Raises ``OSError`` when the repository cannot be read."""
    current = current_refs(git_dir, [r["ref"] for r in refs])
    moved = []
    for r in refs:
        now = current.get(r["ref"])
        if r["new"] in _ZERO:
            happened = now is None
        else:
            happened = now == r["new"] or _in_reflog(git_dir, r["ref"], r["old"], r["new"])
        if happened:
            moved.append(r)
    return moved
