"""Free space on a data filesystem, and the reserve below which new work is refused.

A full disk found by the write that fails is found too late: SQLite's commit,
a ref's lock file or the record of a push that already happened. So am and af
keep a *reserve*: when the free space on one of their data filesystems falls
below it, they refuse new work (pushes, changes) with words, and the space
left is for work already accepted (recording a push whose refs moved, a
build's end). Reads go on: clones, fetches, pages.

The reserve is ``[node] disk_reserve_mb`` (256 MiB by default), or a tenth of
the filesystem when that is smaller (a filesystem under 2.5 GiB): 256 MiB holds
SQLite's journal and WAL growth of a busy am and the ref updates, reflogs and
spool files of many pushes in flight, and is little on any real disk; a
percentage alone would keep 100 GB of a 10 TB array idle. 0 turns it off.

Stdlib only, one ``statvfs`` per check (about a microsecond).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["DEFAULT_RESERVE_MB", "MIB", "Reserve", "Shortfall", "existing", "usage"]

DEFAULT_RESERVE_MB = 256
MIB = 1024 * 1024


def existing(path: str) -> str:
    """``path``, or its nearest ancestor that exists (a directory not made yet)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def usage(path: str) -> tuple[int, int]:
    """``(free, total)`` bytes of the filesystem holding ``path``, as an
    unprivileged writer sees them (blocks reserved for root are not free)."""
    st = os.statvfs(existing(path))
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize


class Shortfall:
    """A filesystem below its reserve; ``str()`` says so to people."""

    def __init__(self, path: str, free: int, reserve: int) -> None:
        self.path, self.free, self.reserve = path, free, reserve

    def __str__(self) -> str:
        return (
            f"only {self.free // MIB} MiB free on {self.path} "
            f"(the reserve is {max(self.reserve // MIB, 1)} MiB)"
        )


class Reserve:
    """The reserve of one or more data paths (the same filesystem counts once)."""

    def __init__(self, paths: Iterable[str], reserve_mb: int = DEFAULT_RESERVE_MB) -> None:
        self.paths = list(dict.fromkeys(os.path.abspath(p) for p in paths))
        self.reserve_mb = reserve_mb

    def reserve_of(self, total: int) -> int:
        """The reserve in bytes on a filesystem of ``total`` bytes."""
        return min(self.reserve_mb * MIB, total // 10) if self.reserve_mb > 0 else 0

    def shortfall(self) -> Shortfall | None:
        """The first path whose filesystem is below its reserve, or None.

        A path that cannot be looked at (``OSError``) is skipped: the write
        that follows reports the real problem.
        """
        if self.reserve_mb <= 0:
            return None
        for path in self.paths:
            try:
                free, total = usage(path)
            except OSError:
                continue
            reserve = self.reserve_of(total)
            if free < reserve:
                return Shortfall(path, free, reserve)
        return None
