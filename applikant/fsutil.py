"""Files that are never seen half-written: temp file, fsync, rename, fsync the
directory. Used for sshd's authorized_keys, af's spool and repo metadata; stdlib
only (`ah` imports it)."""

from __future__ import annotations

import os


def real_path(path: str) -> str:
    """``os.path.realpath(path)``, the same answer, asked of the kernel in three
    system calls when the path exists (Python's walks it with one lstat per
    component: af confines every hook and repository path this way)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:  # (missing, a dangling or looping symlink: Python's rules)
        return os.path.realpath(path)
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:  # (no /proc)
        return os.path.realpath(path)
    finally:
        os.close(fd)
    if not real.startswith("/") or real.endswith(" (deleted)"):
        return os.path.realpath(path)
    return real


def fsync_dir(directory: str) -> None:
    """Make a rename or unlink in `directory` survive a crash."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def write_atomic(
    path: str,
    content: str,
    mode: int = 0o600,
    owner_uid: int | None = None,
    owner_gid: int | None = None,
) -> None:
    """Replace ``path`` with ``content`` so that no reader ever sees a partial file.

    A temp file in the same directory gets mode and owner before any byte is
    written (so the content is never readable more widely than ``mode``), is
    fsynced, then renamed over ``path``; the directory is fsynced so the rename
    survives a crash. ``owner_uid``/``owner_gid`` of ``None`` leave that id as
    is (chown needs root). On any error the temp file is removed and ``path``
    is untouched.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(
        directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.fchmod(fd, mode)
            if owner_uid is not None or owner_gid is not None:
                os.fchown(
                    fd,
                    -1 if owner_uid is None else owner_uid,
                    -1 if owner_gid is None else owner_gid,
                )
            data = content.encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(directory)
