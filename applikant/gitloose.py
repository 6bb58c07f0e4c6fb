"""A "no" read straight from a repository's loose objects, where that is exact,
to spare a git process (one per pushed branch in post-receive: about 2 ms of
the git host's CPU, most of it exec and dynamic linking).

After a small push (under git's ``unpackLimit``, 100 objects) its commit and
root tree are loose files under ``objects/``, zlib-deflated. When the root tree
has no entry named like the first component of a path (compared without case),
the commit surely lacks the path: ``git ls-tree`` would list nothing.

Anything else is ``None``, "ask git": an entry of that name (git says whether
the rest of the path is there), an object that is not loose here (packed, in an
alternate or a quarantine), not a commit, or unreadable, and any repository
that may have replace refs (``refs/replace/``, in ``packed-refs`` too, or a ref
store this module does not read) or shares another's objects (``commondir``),
since git would then read other objects than these files.

Stdlib only.
"""

from __future__ import annotations

import os
import zlib

__all__ = ["PACKED_REFS_MAX", "surely_lacks"]

_HEX = frozenset("0123456789abcdef")
PACKED_REFS_MAX = 1 << 20  # bytes of packed-refs searched for replace refs; larger: git


def surely_lacks(git_dir: str, commit: str, path: str) -> bool | None:
    """True when ``commit``'s tree surely has no ``path`` (a file or directory,
    relative to the root); None when only git can tell. Never raises."""
    top = path.split("/", 1)[0]
    if len(commit) not in (40, 64) or not set(commit) <= _HEX or not top:
        return None
    if path.startswith(":") or any(c in path for c in "*?[\\"):
        return None  # (pathspec magic, wildcards: git's to match)
    try:
        if _may_replace(git_dir):
            return None
        objects = os.path.join(git_dir, "objects")
        found = _read_loose(objects, commit, b"commit")
        if found is None or not found.startswith(b"tree "):
            return None
        tree = found[5 : 5 + len(commit)].decode("ascii", "replace")
        if found[5 + len(commit) : 6 + len(commit)] != b"\n" or not set(tree) <= _HEX:
            return None
        entries = _read_loose(objects, tree, b"tree")
        if entries is None:
            return None
        return _lacks(entries, top.encode("utf-8", "surrogateescape").lower(), len(commit) // 2)
    except (OSError, ValueError, zlib.error):
        return None


def _may_replace(git_dir: str) -> bool:
    """Whether git could read other objects than this repository's own loose
    files say: replace refs, a ref store of another kind, shared objects."""
    for other in ("reftable", "commondir"):
        if os.path.lexists(os.path.join(git_dir, other)):
            return True
    try:
        if os.listdir(os.path.join(git_dir, "refs", "replace")):
            return True
    except FileNotFoundError:
        pass
    try:
        with open(os.path.join(git_dir, "packed-refs"), "rb") as f:
            if os.fstat(f.fileno()).st_size > PACKED_REFS_MAX:
                return True  # (reading it all would cost more than asking git)
            return b"refs/replace/" in f.read()
    except FileNotFoundError:
        return False


def _read_loose(objects: str, oid: str, kind: bytes) -> bytes | None:
    """The content of loose object ``oid`` if it is one of ``kind``; None when
    it is not loose here, of another kind, or not well formed."""
    try:
        with open(os.path.join(objects, oid[:2], oid[2:]), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    data = zlib.decompress(raw)
    head, sep, body = data.partition(b"\0")
    want = kind + b" " + str(len(body)).encode()
    return body if sep and head == want else None


def _lacks(entries: bytes, name: bytes, hash_size: int) -> bool | None:
    """True when the tree ``entries`` (``<mode> <name>\\0<hash>``...) have no
    ``name`` (without case); None when one matches or the tree is malformed."""
    pos, end = 0, len(entries)
    while pos < end:
        space = entries.find(b" ", pos)
        nul = entries.find(b"\0", space + 1)
        if space < 0 or nul < 0 or nul + 1 + hash_size > end:
            return None
        if entries[space + 1 : nul].lower() == name:
            return None
        pos = nul + 1 + hash_size
    return True
