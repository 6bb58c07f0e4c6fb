"""What a pushed branch brought, for webhooks: its new commits with their files.

af asks git on the git host during post-receive (the refs have moved; the
objects are in the repository), and the answer rides with the hook call to am,
which builds the webhook payloads from it (Gitea's and GitHub's `commits[]`).

- An update `old..new` lists the commits `new` has and `old` had not; a new
  branch lists the commits no other ref of the repository has.
- At most `COMMITS_MAX` commits are described, the newest, oldest first (as
  GitHub and Gitea list them); `total_commits` counts them all. When the
  update brought none (a branch made at an existing commit, a rewind),
  `head_commit` describes the commit the branch now points at.
- Each commit: id, message, author and committer (name, email, ISO 8601
  date), and the paths it added, removed and modified (against its first
  parent; renames are a removal and an addition). Long messages and long path
  lists are cut (`MESSAGE_MAX`, `PATHS_MAX`).

`describe` never raises for what git does: an unreadable repository, a
failure or a timeout gives no commits (None), and the push stands as it is.
"""

from __future__ import annotations

import re
from typing import Any

from applikant import gitasync, gitops

__all__ = ["COMMITS_MAX", "describe", "log_argv", "parse_log"]

COMMITS_MAX = 20
MESSAGE_MAX = 16 * 1024
PATHS_MAX = 300  # per commit, all three lists together
TIMEOUT = 20.0
_OID = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?\Z")
_FORMAT = "%x1e%H%x1f%an%x1f%ae%x1f%aI%x1f%cn%x1f%ce%x1f%cI%x1f%B%x1f"
_STATUS = {"A": "added", "D": "removed", "M": "modified", "T": "modified"}


def _range(ref: str, old: str, new: str) -> list[str]:
    if set(old) == {"0"}:
        # A new branch: what no other ref has (this ref itself already points at new).
        return [new, "--not", f"--exclude={ref}", "--glob=refs/*"]
    return [f"{old}..{new}"]


def log_argv(
    git_dir: str, ref: str, old: str, new: str, *, count: bool = False, head: bool = False
) -> list[str]:
    """argv of the `git log` (or `rev-list --count`) of the commits a ref update
    brought; with `head`, of the commit `new` alone."""
    base = gitops.git_argv(git_dir)
    if count:
        return [*base, "rev-list", "--count", *_range(ref, old, new)]
    revs = [new, "-n1"] if head else _range(ref, old, new)
    return [
        *base,
        "log",
        f"-n{COMMITS_MAX}",
        "-z",
        "--no-renames",
        "--diff-merges=first-parent",
        "--name-status",
        f"--format=tformat:{_FORMAT}",
        *revs,
        "--",
    ]


def parse_log(out: bytes) -> list[dict[str, Any]]:
    """The commits of `log_argv`'s output, oldest first; garbled entries are left out."""
    commits = []
    for chunk in out.decode("utf-8", "replace").split("\x1e")[1:]:
        parts = chunk.split("\x1f", 8)
        if len(parts) != 9 or not _OID.match(parts[0]):
            continue
        sha, an, ae, ad, cn, ce, cd, message, rest = parts
        files: dict[str, list[str]] = {"added": [], "removed": [], "modified": []}
        tokens = rest.lstrip("\x00\n").split("\x00")
        kept = 0
        for status, path in zip(tokens[0::2], tokens[1::2], strict=False):
            where = _STATUS.get(status[:1])
            if where is not None and path and kept < PATHS_MAX:
                files[where].append(path)
                kept += 1
        commits.append(
            {
                "id": sha,
                "message": message[:MESSAGE_MAX],
                "timestamp": ad,
                "author": {"name": an, "email": ae, "date": ad},
                "committer": {"name": cn, "email": ce, "date": cd},
                **files,
            }
        )
    commits.reverse()
    return commits


async def _run(argv: list[str], env: dict[str, str]) -> bytes | None:
    done = await gitasync.run(argv, env, timeout=TIMEOUT, capture=True)
    return done.stdout if done is not None and done.returncode == 0 else None


async def describe(
    git_dir: str, ref: str, old: str, new: str, env: dict[str, str]
) -> dict[str, Any] | None:
    """{"commits": [...], "total_commits": n} (and "head_commit" when there are
    no commits) for a branch update, or None when git cannot tell (or nothing
    was pushed to describe: a deletion, a bad id)."""
    if not (_OID.match(old) and _OID.match(new)) or set(new) == {"0"}:
        return None
    out = await _run(log_argv(git_dir, ref, old, new), env)
    if out is None:
        return None
    commits = parse_log(out)
    total = len(commits)
    if not commits:
        alone = await _run(log_argv(git_dir, ref, old, new, head=True), env)
        heads = [] if alone is None else parse_log(alone)
        return {"commits": [], "total_commits": 0, "head_commit": heads[0] if heads else None}
    if total >= COMMITS_MAX:
        counted = await _run(log_argv(git_dir, ref, old, new, count=True), env)
        if counted is not None and counted.strip().isdigit():
            total = int(counted)
    return {"commits": commits, "total_commits": total}
