"""The account builds run as, and whether it can reach what it must not.

Builds run as an unprivileged account only when ab is root (it must switch to
it); otherwise they run as ab's own account and their isolation from am's data
is only as good as that account's (use the docker backend, or run ab as root).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass

__all__ = ["BuildUser", "BuildUserError", "ensure_build_user", "reachable", "traversable"]


class BuildUserError(Exception):
    """The build account is missing and could not be made, or is unsafe."""


@dataclass(frozen=True)
class BuildUser:
    name: str
    uid: int
    gid: int
    groups: frozenset[int]  # supplementary groups it would have on a login

    @classmethod
    def current(cls) -> BuildUser:
        uid, gid = os.getuid(), os.getgid()
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:
            name = str(uid)
        return cls(name, uid, gid, frozenset(os.getgroups()))

    @classmethod
    def lookup(cls, name: str) -> BuildUser:
        """KeyError when there is no such account."""
        entry = pwd.getpwnam(name)
        # Builds start with no supplementary group (setgroups([])), but the
        # reachability checks assume the worst: the account's own groups.
        groups = {g.gr_gid for g in grp.getgrall() if name in g.gr_mem}
        return cls(name, entry.pw_uid, entry.pw_gid, frozenset(groups))


def useradd_argv(name: str) -> list[str]:
    return [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--home-dir",
        "/nonexistent",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "Applikant builds",
        name,
    ]


def ensure_build_user(name: str, create: bool = True) -> BuildUser:
    """The account `name`, made (a system account with its own group, no home,
    no login shell) when missing and `create` is set. BuildUserError when it
    cannot be had, or when it is root or has uid 0's group."""
    try:
        user = BuildUser.lookup(name)
    except KeyError:
        if not create:
            raise BuildUserError(f"no build user {name!r} (and create_build_user is off)") from None
        try:
            done = subprocess.run(
                useradd_argv(name),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BuildUserError(f"cannot create build user {name!r}: {exc}") from exc
        try:
            user = BuildUser.lookup(name)
        except KeyError:
            raise BuildUserError(
                f"cannot create build user {name!r}: {done.stderr.strip() or 'useradd failed'}"
            ) from None
    if user.uid == 0 or user.gid == 0:
        raise BuildUserError(f"build user {name!r} is root or in root's group")
    return user


def _allows(st: os.stat_result, user: BuildUser, bits: int) -> bool:
    """Whether the mode bits (of r=4, w=2, x=1) allow `user` (ACLs ignored)."""
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        return (st.st_mode >> 6) & bits == bits
    if st.st_gid == user.gid or st.st_gid in user.groups:
        return (st.st_mode >> 3) & bits == bits
    return st.st_mode & bits == bits


def traversable(path: str, user: BuildUser) -> str | None:
    """None when `user` may enter every directory down to `path` (inclusive);
    else the first directory that stops it."""
    path = os.path.abspath(path)
    parts = path.split("/")
    for i in range(1, len(parts) + 1):
        here = "/".join(parts[:i]) or "/"
        try:
            st = os.stat(here)
        except OSError:
            return here
        if stat.S_ISDIR(st.st_mode) and not _allows(st, user, 1):
            return here
    return None


def reachable(path: str, user: BuildUser) -> bool:
    """Whether `user` could get at `path`: for a directory, enter it (then
    whatever inside is readable by all is readable by it); for anything else,
    read it. Both need every directory above to be enterable. Judged from mode
    bits and owners only (ACLs and capabilities are not looked at); a path that
    does not exist is not reachable."""
    path = os.path.abspath(path)
    if traversable(os.path.dirname(path), user) is not None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False
    return _allows(st, user, 1 if stat.S_ISDIR(st.st_mode) else 4)
