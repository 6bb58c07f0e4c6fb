"""Fixtures for the builder tests: real git repositories with a build.sh, and a
builds root the build user can reach (pytest's tmp_path sits under a 0700
directory of root's, which an unprivileged build user cannot enter)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from applikant.builder import BuilderSettings, BuildSpec

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "t@example.org",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "t@example.org",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "HOME": "/nonexistent",
}


def git(*args: str, cwd: str | Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True
    ).stdout.strip()


@dataclass
class Repo:
    """A bare repository (`git_dir`) and a work tree that pushes into it."""

    git_dir: Path
    work: Path

    def commit(
        self,
        files: dict[str, str],
        *,
        executable: tuple[str, ...] = (),
        branch: str = "main",
        push: bool = True,
    ) -> str:
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(0o755 if name in executable else 0o644)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", "c", cwd=self.work)
        oid = git("rev-parse", "HEAD", cwd=self.work)
        if push:
            git("push", "-q", "-f", str(self.git_dir), f"HEAD:refs/heads/{branch}", cwd=self.work)
        return oid

    def build_sh(self, script: str, **kwargs: object) -> str:
        return self.commit({".applikant/build.sh": script}, **kwargs)  # type: ignore[arg-type]

    def spec(self, commit: str, build_id: str = "build-1") -> BuildSpec:
        return BuildSpec(
            build_id=build_id,
            repo="alice/demo",
            ref="refs/heads/main",
            commit=commit,
            source=str(self.git_dir),
        )


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    git_dir = tmp_path / "repos" / "alice" / "demo.git"
    git_dir.parent.mkdir(parents=True)
    git("init", "-q", "--bare", str(git_dir), cwd=tmp_path)
    work = tmp_path / "work"
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    return Repo(git_dir, work)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory outside the 0700 tmp_path: the build user can reach into it."""
    path = Path(tempfile.mkdtemp(prefix="applikant-test-builds-"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def builds_root(shared_dir: Path) -> Path:
    return shared_dir / "builds"


@pytest.fixture
def settings(builds_root: Path) -> BuilderSettings:
    return BuilderSettings(builds_root=str(builds_root), timeout=20, kill_grace=0.5)


class Lines:
    """An on_line sink that keeps the lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def lines() -> Lines:
    return Lines()


def alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in (b"Z", b"X")
