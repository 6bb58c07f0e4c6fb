"""What af tells am a pushed branch brought (pushinfo.py), asked of real git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import trio

from applikant.frontend import authkeys, pushinfo
from harness.gitenv import git_env

ZERO = "0" * 40


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        env=git_env(repo.parent),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit(repo: Path, message: str, **files: str | None) -> str:
    for name, text in files.items():
        if text is None:
            git(repo, "rm", "-q", name)
        else:
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            (repo / name).write_text(text)
            git(repo, "add", name)
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def describe(repo: Path, ref: str, old: str, new: str) -> dict | None:
    return trio.run(pushinfo.describe, str(repo / ".git"), ref, old, new, {})


def test_updates_new_branches_rewinds_and_garbage(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    c1 = commit(repo, "one", **{"a": "1", "weird name\twith tab": "x"})
    c2 = commit(repo, "two\n\nbody", a="2", **{"weird name\twith tab": None, "d/e": "e"})
    update = describe(repo, "refs/heads/main", c1, c2)
    assert update is not None and update["total_commits"] == 1
    (only,) = update["commits"]
    assert (only["id"], only["message"]) == (c2, "two\n\nbody\n")
    assert (only["added"], only["removed"], only["modified"]) == (
        ["d/e"],
        ["weird name\twith tab"],
        ["a"],
    )
    assert only["author"]["email"] == "t@example.org" and "T" in only["timestamp"]
    # main is the only ref: as a new branch, it brought both commits, oldest first.
    new = describe(repo, "refs/heads/main", ZERO, c2)
    assert [c["id"] for c in new["commits"]] == [c1, c2]
    # A branch at a commit another ref has: no commits, the head described.
    git(repo, "branch", "copy", c2)
    same = describe(repo, "refs/heads/copy", ZERO, c2)
    assert same["commits"] == [] and same["head_commit"]["id"] == c2
    # A rewind brings nothing either.
    assert describe(repo, "refs/heads/main", c2, c1)["head_commit"]["id"] == c1
    # Deletions, bad ids and unknown objects: nothing to say.
    assert describe(repo, "refs/heads/main", c2, ZERO) is None
    assert describe(repo, "refs/heads/main", "--all", c2) is None
    assert describe(repo, "refs/heads/main", c1, "f" * 40) is None


def test_many_commits_are_capped_and_counted(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    git(tmp_path, "init", "-q", "-b", "main", str(repo))
    base = commit(repo, "base")
    made = [commit(repo, f"c{i}", n=str(i)) for i in range(pushinfo.COMMITS_MAX + 3)]
    found = describe(repo, "refs/heads/main", base, made[-1])
    assert found["total_commits"] == len(made)
    assert [c["id"] for c in found["commits"]] == made[3:]


def test_parse_log_leaves_out_garbled_entries() -> None:
    sha = "a" * 40
    good = f"\x1e{sha}\x1fA\x1fa@x\x1f2024-01-01T00:00:00+00:00\x1fC\x1fc@x\x1f2024-01-01T00:00:00+00:00\x1fmsg\n\x1f\x00\nM\x00f\x00"
    bad = "\x1enot-a-sha\x1fA\x1f"
    (one,) = pushinfo.parse_log((good + bad).encode())
    assert one["id"] == sha and one["modified"] == ["f"]


def test_the_forced_command_names_the_key(tmp_path: Path) -> None:
    line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x"
    fp = "SHA256:" + "A" * 43
    out = authkeys.render([("user-7", line, fp), ("user-8", line.replace("OMq", "OMr"))], "/x/as")
    assert f'command="/x/as user-7 {fp}",' in out and 'command="/x/as user-8",' in out
    assert "# skipped" in authkeys.render([("user-7", line, "SHA256:bad;rm")], "/x/as")
