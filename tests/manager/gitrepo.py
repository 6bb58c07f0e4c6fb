"""A small real repository for fast-forward questions: a bare repo with three
commits A <- B and A <- C (C is a sibling of B, so B -> C is a force-push)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

ZERO = "0" * 40


def git(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    base.update(
        {
            "GIT_AUTHOR_NAME": "T",
            "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "T",
            "GIT_COMMITTER_EMAIL": "t@example.org",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(cwd or os.getcwd()),
        }
    )
    base.update(env or {})
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=base, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@dataclass
class Repo:
    bare: Path
    work: Path
    a: str
    b: str
    c: str


def make_repo(tmp: Path) -> Repo:
    work = tmp / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", str(work), cwd=tmp)
    (work / "README").write_text("a\n")
    (work / ".applikant").mkdir()
    (work / ".applikant" / "build.sh").write_text("true\n")
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "A", cwd=work)
    a = git("rev-parse", "HEAD", cwd=work)
    (work / "README").write_text("b\n")
    git("commit", "-q", "-am", "B", cwd=work)
    b = git("rev-parse", "HEAD", cwd=work)
    git("checkout", "-q", "-b", "side", a, cwd=work)
    (work / "README").write_text("c\n")
    git("commit", "-q", "-am", "C", cwd=work)
    c = git("rev-parse", "HEAD", cwd=work)
    bare = tmp / "repo.git"
    git("clone", "-q", "--bare", "--no-local", str(work), str(bare), cwd=tmp)
    return Repo(bare, work, a, b, c)
