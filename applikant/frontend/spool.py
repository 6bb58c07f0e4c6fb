"""af's durable record of pushes: intents written ahead, events waiting for am, dead letters.

Three directories under the spool directory, one JSON file per push in each:

* ``intents/<event_id>.json``: written by af when am approved a push, *before*
  git moves any ref (the write-ahead record; if it cannot be written the push
  is refused and nothing changes). Removed once the push is recorded in am.
  After a crash, af settles each intent whose receive-pack is gone against the
  refs on disk (:mod:`applikant.frontend.delivery`).
* the directory itself: post-receive events that could not reach am yet.
* ``failed/``: events am refused for good (the dead letters), each with a
  ``.reason`` file beside it; ``applikant doctor``, ``/metrics`` and the admin
  dashboard show them.

Events waiting for am: one JSON file per event in the spool directory, named
``<time_ns>-<event_id>.json`` so that a directory listing sorts them in the
order they happened. A file appears whole or not at all (temp file, fsync,
rename, directory fsync): after a crash or power loss every event that was
reported spooled is there, and no half-written one is.

Both af (am unreachable) and ``ah`` (af unreachable) write here; af delivers
the files when am is back, oldest first, and removes each one once am has
acknowledged it. am deduplicates on ``event_id``, so an event delivered twice
(am recorded it but its answer was lost) is recorded once. An intent, its
queued event and any copy ``ah`` spooled carry the same event id
(:mod:`applikant.frontend.pushid`).

An intent is removed without a directory fsync: if the removal is lost in a
crash, the intent is settled again and am's deduplication keeps it one record.
Its file is kept for the next intent (``intents/.free-<n>``, at most
``FREE_SLOTS``): rewriting a file costs the kernel less than making a new one
(no inode to find and none to free; on ext4 without a journal, finding a free
inode scans past every recently deleted one, and git deletes many in a push).
The new intent is still written whole under a temp name, fsynced, renamed into
place and its directory fsynced: it appears whole or not at all, as before.

Stdlib only: ``ah`` imports this module, on its failure path only.
"""

from __future__ import annotations

import json
import os
import stat
import time

from applikant.fsutil import fsync_dir, write_atomic

TYPE_CHECKING = False  # typing costs ah an import on its failure path
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "FAILED_DIR",
    "FREE_SLOTS",
    "INTENTS_DIR",
    "bury",
    "dead_letters",
    "drop_intent",
    "intent_path",
    "intents",
    "park",
    "pending",
    "read",
    "remove",
    "summary",
    "write",
    "write_intent",
]

FAILED_DIR = "failed"
INTENTS_DIR = "intents"
_SUFFIX = ".json"
_FREE = ".free-"  # + n: the file of a settled intent, kept for the next
FREE_SLOTS = 4
_ID_CHARS = frozenset("0123456789abcdef-")


def _check_id(event_id: str) -> None:
    if (
        not isinstance(event_id, str)
        or not 0 < len(event_id) <= 64
        or any(c not in _ID_CHARS for c in event_id)
    ):
        raise ValueError("an event id is made of lowercase hex digits and dashes")


def write(spool_dir: str, event_id: str, record: dict) -> str:
    """Store ``record`` durably under ``event_id``; return the file's path.

    Creates the directory (mode 0700) when missing. Raises ``OSError`` when
    the disk refuses, ``ValueError`` for a bad id or a record that is not JSON.
    """
    _check_id(event_id)
    os.makedirs(spool_dir, mode=0o700, exist_ok=True)
    path = os.path.join(spool_dir, f"{time.time_ns():020d}-{event_id}{_SUFFIX}")
    write_atomic(path, json.dumps(record, sort_keys=True), mode=0o600)
    return path


def pending(spool_dir: str) -> list[str]:
    """Paths of the spooled events, oldest first (empty when there is no spool)."""
    try:
        names = os.listdir(spool_dir)
    except FileNotFoundError:
        return []
    return [
        os.path.join(spool_dir, n)
        for n in sorted(names)
        if n.endswith(_SUFFIX) and not n.startswith(".")
    ]


def read(path: str) -> dict:
    """The record in ``path``; ``ValueError`` when it is not a JSON object."""
    with open(path, "rb") as f:
        record = json.loads(f.read().decode("utf-8"))
    if not isinstance(record, dict):
        raise ValueError("a spooled event must be a JSON object")
    return record


def remove(path: str) -> None:
    """Forget a delivered event (idempotent)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_dir(os.path.dirname(path))


def park(path: str, reason: str, spool_dir: str | None = None) -> str:
    """Move an event am refused for good to ``failed/`` (of ``spool_dir``, by
    default the event's own directory), with ``<name>.reason`` beside it."""
    directory = os.path.join(spool_dir or os.path.dirname(path), FAILED_DIR)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    target = os.path.join(directory, os.path.basename(path))
    with open(target + ".reason", "w", encoding="utf-8") as f:
        f.write(reason + "\n")
    os.rename(path, target)
    fsync_dir(directory)
    fsync_dir(os.path.dirname(path))
    return target


def bury(spool_dir: str, event_id: str, record: dict[str, Any], reason: str) -> str:
    """Store an event am refused for good straight in ``failed/``, with its reason."""
    path = write(os.path.join(spool_dir, FAILED_DIR), event_id, record)
    write_atomic(path + ".reason", reason + "\n", mode=0o600)
    return path


# ---- intents: written ahead of the ref update -----------------------------------


def intent_path(spool_dir: str, event_id: str) -> str:
    """Where the intent of push ``event_id`` lives (whether or not it exists)."""
    _check_id(event_id)
    return os.path.join(spool_dir, INTENTS_DIR, event_id + _SUFFIX)


def write_intent(spool_dir: str, event_id: str, record: dict[str, Any]) -> str:
    """Make the intent of push ``event_id`` durable; its path.

    Raises ``OSError`` (``ENOSPC``, ``EIO``...) when it could not be made
    durable: the caller then refuses the push.
    """
    path = intent_path(spool_dir, event_id)
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    content = json.dumps(record, sort_keys=True).encode("utf-8")
    if not _rewrite_free(directory, path, content):
        write_atomic(path, content.decode("utf-8"), mode=0o600)
    return path


def _free_slot(directory: str, n: int) -> str:
    return os.path.join(directory, f"{_FREE}{n}")


def _rewrite_free(directory: str, path: str, content: bytes) -> bool:
    """Write ``content`` to ``path`` as write_atomic would (temp name, fsync,
    rename, directory fsync), in the file of a settled intent; False when
    there is none to take, or when a new file would not fit (the disk is full:
    the push is refused then, as it always was). A slot that is not a plain
    file of this account's is never written to: it is removed (and the caller
    writes a new file)."""
    room = os.statvfs(directory)
    if room.f_bavail == 0 or room.f_favail == 0:
        return False  # a new file would not fit: refused as ever (write_atomic says why)
    tmp = os.path.join(
        directory, f".{os.path.basename(path)}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    )
    for n in range(FREE_SLOTS):
        try:
            os.rename(_free_slot(directory, n), tmp)  # taken: no other writer gets it
        except FileNotFoundError:
            continue
        break
    else:
        return False
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # (a symlink, a directory, a FIFO...)
        _discard(tmp)
        return False
    try:
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
                _discard(tmp)
                return False
            os.fchmod(fd, 0o600)
            view = memoryview(content)
            offset = 0
            while offset < len(content):
                offset += os.pwrite(fd, view[offset:], offset)
            os.ftruncate(fd, len(content))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    fsync_dir(directory)
    return True


def _discard(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass  # (a directory stays, under its hidden temp name)


def intents(spool_dir: str) -> list[str]:
    """Paths of the intents, oldest first."""
    directory = os.path.join(spool_dir, INTENTS_DIR)
    found = []
    for path in pending(directory):
        try:
            found.append((os.stat(path).st_mtime_ns, path))
        except FileNotFoundError:
            continue
    return [path for _, path in sorted(found)]


def drop_intent(spool_dir: str, event_id: str) -> None:
    """Forget the intent of a push now recorded (idempotent, no fsync: see
    above); its file is kept for the next intent while a free slot is open."""
    path = intent_path(spool_dir, event_id)
    directory = os.path.dirname(path)
    try:
        for n in range(FREE_SLOTS):
            slot = _free_slot(directory, n)
            if not os.path.lexists(slot):
                os.rename(path, slot)  # (two drops racing for it: one file is freed)
                return
        os.unlink(path)
    except FileNotFoundError:
        pass


# ---- what there is, for af's status and `applikant doctor` --------------------------


def dead_letters(spool_dir: str, limit: int = 20) -> list[dict[str, Any]]:
    """The newest dead letters: ``{"file", "event_id", "repo", "reason", "time"}``."""
    directory = os.path.join(spool_dir, FAILED_DIR)
    paths = pending(directory)
    out = []
    for path in reversed(paths[-limit:] if limit else paths):
        entry: dict[str, Any] = {
            "file": path,
            "event_id": "",
            "repo": "",
            "reason": "",
            "time": 0.0,
        }
        try:
            entry["time"] = os.stat(path).st_mtime
            with open(path + ".reason", encoding="utf-8", errors="replace") as f:
                entry["reason"] = f.read().strip()
            request = read(path).get("request")
            if isinstance(request, dict):
                env = request.get("env")
                env = env if isinstance(env, dict) else {}
                entry["event_id"] = str(request.get("event_id") or "")
                entry["repo"] = str(env.get("APPLIKANT_REPO") or request.get("cwd") or "")
        except (OSError, ValueError):
            pass
        out.append(entry)
    return out


def summary(spool_dir: str, now: float | None = None) -> dict[str, Any]:
    """Counts of intents, queued events and dead letters, and the age (seconds)
    of the oldest intent and queued event (0 when none)."""
    now = time.time() if now is None else now

    def oldest(paths: list[str]) -> float:
        ages = []
        for path in paths:
            try:
                ages.append(now - os.stat(path).st_mtime)
            except OSError:
                continue
        return round(max(ages, default=0.0), 3)

    intent_paths = intents(spool_dir)
    queued = pending(spool_dir)
    return {
        "intents": len(intent_paths),
        "queued": len(queued),
        "dead": len(pending(os.path.join(spool_dir, FAILED_DIR))),
        "oldest_intent_s": oldest(intent_paths),
        "oldest_queued_s": oldest(queued),
    }
