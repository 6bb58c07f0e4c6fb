"""Faults on purpose, for the durability tests and `bench.faults`: small
filesystems to fill, a moment in a push to strike at, and the ledger that says
whether anything acknowledged was lost or recorded twice.

    with Tmpfs(tmp / "db", 16) as db:           # root only; see Tmpfs.available
        site = GitSite(tmp / "site", data={"db": db.path}, disk_reserve_mb=0)
        ledger = Ledger(site, "alice/p", work, user)
        db.fill(); ledger.push(); db.release()
        counts = ledger.settle()                 # {"acknowledged", "lost", ...}

The moment a push is approved (af writes its intent) is seen with inotify on
af's `spool/intents/`: a test can stop am right there, between pre-receive and
post-receive, and strike at the phase it wants. A push can also be held at its
pre-receive, before am is asked (HookGate).
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from applikant.node.errors import DistError
from harness.gitenv import GitSite, User
from harness.wait import wait_until

__all__ = ["HookGate", "Ledger", "Push", "Tmpfs", "Watch", "tmpfs_unavailable"]

ZERO = "0" * 40


def tmpfs_unavailable() -> str | None:
    """Why a test cannot mount a tmpfs here (a reason for pytest.skip), or None."""
    if os.geteuid() != 0:
        return "mounting a small tmpfs to fill needs root"
    probe = tempfile.mkdtemp(prefix="applikant-tmpfs-probe-")
    try:
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", probe],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0:
            return f"cannot mount a tmpfs: {r.stderr.strip() or r.returncode}"
        subprocess.run(["umount", probe], check=True)
        return None
    finally:
        os.rmdir(probe)


class Tmpfs:
    """A tmpfs of ``size_mb`` MiB mounted on ``path`` for a ``with`` block."""

    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = Path(path)
        self.size_mb = size_mb
        self._fillers: list[Path] = []

    def __enter__(self) -> Tmpfs:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mount",
                "-t",
                "tmpfs",
                "-o",
                f"size={self.size_mb}m,mode=0755",
                "tmpfs",
                str(self.path),
            ],
            check=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        # A process may still hold a file open: lazily, so the test never hangs here.
        subprocess.run(["umount", "-l", str(self.path)], check=False)

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> None:
        """Take all free space but ``leave`` bytes (in whole pages)."""
        filler = self.path / f".filler-{len(self._fillers)}"
        self._fillers.append(filler)
        chunk = b"\0" * (1 << 20)
        with open(filler, "wb") as f:
            while True:
                want = self.free() - leave
                if want <= 0:
                    break
                try:
                    f.write(chunk[: min(len(chunk), max(want, 4096))])
                    f.flush()
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break

    def release(self) -> None:
        """Give back what :meth:`fill` took."""
        for filler in self._fillers:
            filler.unlink(missing_ok=True)
        self._fillers.clear()


class Watch:
    """Wakes when a name appears in a directory (Linux inotify through libc).

    :meth:`intents` wakes when af writes a push's intent: the push was
    approved and its refs are about to move (:class:`HookGate` holds a push
    before am is asked). close() when done.
    """

    IN_MOVED_TO = 0x80

    def __init__(self, directory: Path, mask: int, prefix: str = "", suffix: str = "") -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.prefix, self.suffix = prefix, suffix
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if self._libc.inotify_add_watch(self.fd, str(directory).encode(), mask) < 0:
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

    @classmethod
    def intents(cls, spool_dir: Path) -> Watch:
        # write_atomic renames the finished file into place
        return cls(Path(spool_dir) / "intents", cls.IN_MOVED_TO, suffix=".json")

    def wait(self, timeout: float) -> str | None:
        """The next name that appeared, or None after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            data = os.read(self.fd, 65536)
            offset = 0
            while offset < len(data):
                _, _, _, length = struct.unpack_from("iIII", data, offset)
                name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
                offset += 16 + length
                if (
                    name.startswith(self.prefix)
                    and name.endswith(self.suffix)
                    and not (name.startswith(".") and not self.prefix.startswith("."))
                ):
                    return name
        return None

    def close(self) -> None:
        os.close(self.fd)


class HookGate:
    """Holds a repository's pre-receive before it asks af anything, while held.

    The repository's ``hooks/pre-receive`` becomes a script that notes its
    arrival, waits while the gate is held, then runs af's hook script in its own
    shell (sourced: ``$0`` still names the hook, the pipes to ``as`` are the
    same). A test holds the gate, starts a push, waits for it to arrive, stops
    am, and opens the gate: pre-receive then surely asks a stopped am, which a
    watch on the push's objects could not promise (am may answer first).
    """

    @classmethod
    def of(cls, site: GitSite, repo: str) -> HookGate:
        return cls(site.repo_root / f"{repo}.git", site.repo_root / ".applikant-hook", site.tmp)

    def __init__(self, git_dir: Path, hook_script: Path, where: Path) -> None:
        self.arrived_path = Path(where) / "gate-arrived"
        self.held_path = Path(where) / "gate-held"
        hook = Path(git_dir) / "hooks" / "pre-receive"
        hook.unlink()
        hook.write_text(
            "#!/bin/sh\n"
            f": > '{self.arrived_path}'\n"
            f"while [ -e '{self.held_path}' ]; do sleep 0.02; done\n"
            f". '{hook_script}'\n"
        )
        hook.chmod(0o755)

    def hold(self) -> None:
        self.arrived_path.unlink(missing_ok=True)
        self.held_path.touch()

    def wait_arrived(self, timeout: float = 30.0) -> None:
        wait_until(self.arrived_path.exists, timeout, "the push to reach pre-receive")

    def open(self) -> None:
        self.held_path.unlink(missing_ok=True)


@dataclass
class Push:
    """One push attempt to its own new branch, and what the client was told."""

    ref: str
    new: str
    acknowledged: bool = False
    output: str = ""
    seconds: float = 0.0


@dataclass
class Ledger:
    """Pushes to ``repo`` from the working copy ``work``, each to a new branch, and
    the check that each acknowledged one is in the repository and recorded once,
    and each refused one changed nothing."""

    site: GitSite
    repo: str
    work: Path
    user: User
    label: str = ""  # in branch names: ledgers of one repository must differ
    pushes: list[Push] = field(default_factory=list)

    def prepare(self) -> Push:
        """A new commit for a new branch (nothing is sent yet)."""
        n = len(self.pushes)
        new = self.site.commit(self.work, f"push {self.label}{n}")
        push = Push(f"refs/heads/{self.label}p{n}", new)
        self.pushes.append(push)
        self.site.git(None, "reset", "-q", "--hard", "HEAD~1", cwd=self.work)
        return push

    def send(self, push: Push, timeout: float = 120) -> Push:
        started = time.monotonic()
        r = self.site.git(
            self.user,
            "push",
            "--porcelain",
            "origin",
            f"{push.new}:{push.ref}",
            cwd=self.work,
            check=False,
            timeout=timeout,
        )
        push.seconds = time.monotonic() - started
        push.acknowledged = r.returncode == 0
        push.output = r.stdout + r.stderr
        return push

    def push(self) -> Push:
        return self.send(self.prepare())

    def spawn(self, push: Push) -> subprocess.Popen[str]:
        """Start ``push`` in the background; :meth:`collect` its result."""
        push.seconds = time.monotonic()
        return subprocess.Popen(
            ["git", "push", "--porcelain", "origin", f"{push.new}:{push.ref}"],
            cwd=self.work,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def collect(self, push: Push, proc: subprocess.Popen[str], timeout: float = 120) -> Push:
        out, _ = proc.communicate(timeout=timeout)
        push.seconds = time.monotonic() - push.seconds
        push.acknowledged = proc.returncode == 0
        push.output = out
        return push

    def _env(self) -> dict[str, str]:
        from harness.gitenv import git_env

        return git_env(self.site.home, GIT_SSH_COMMAND=self.site.sshd.ssh_command(self.user.key))

    # ---- the verdict ------------------------------------------------------------

    def waiting(self) -> int:
        """Pushes af still holds for am (intents and queued events); -1 if af is away."""
        try:
            events = self.site.status()["events"]
        except (DistError, KeyError):
            return -1
        return int(events["intents"]) + int(events["queued"])

    def settle(self, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until af holds nothing back, then count (see :meth:`count`)."""
        wait_until(lambda: self.waiting() == 0, timeout, "af to deliver every push", every=0.1)
        return self.count()

    def count(self) -> dict[str, Any]:
        """``acknowledged``, ``lost`` (acknowledged but not in the repository or
        never recorded), ``duplicated`` (recorded more than once), ``refused``,
        ``refused_changed`` (refused, yet the repository or am's record changed)."""
        recorded: dict[tuple[str, str], int] = {}
        for entry in self.site.pushes(self.repo):
            for r in entry["details"]["refs"]:
                recorded[(r["ref"], r["new"])] = recorded.get((r["ref"], r["new"]), 0) + 1
        counts = {"acknowledged": 0, "lost": 0, "duplicated": 0, "refused": 0, "refused_changed": 0}
        problems = []
        for push in self.pushes:
            times = recorded.get((push.ref, push.new), 0)
            head = self.site.head(self.repo, push.ref)
            if push.acknowledged:
                counts["acknowledged"] += 1
                if head != push.new or times == 0:
                    counts["lost"] += 1
                    problems.append(f"lost {push.ref} (head {head}, recorded {times}x)")
                elif times > 1:
                    counts["duplicated"] += 1
                    problems.append(f"duplicated {push.ref} ({times}x)")
            else:
                counts["refused"] += 1
                if head is not None or times:
                    counts["refused_changed"] += 1
                    problems.append(f"refused but changed {push.ref} (head {head}, {times}x)")
        counts["problems"] = problems
        return counts
