"""A durable spool of post-receive events that could not reach am yet.

One JSON file per event in the spool directory, named
``<time_ns>-<event_id>.json`` so that a directory listing sorts them in the
order they happened. A file appears whole or not at all (temp file, fsync,
rename, directory fsync): after a crash or power loss every event that was
reported spooled is there, and no half-written one is.

Both af (am unreachable) and ``ah`` (af unreachable) write here; af delivers
the files when am is back, oldest first, and removes each one once am has
acknowledged it. am deduplicates on ``event_id``, so an event delivered twice
(am recorded it but its answer was lost) is recorded once.

Events am refuses for good (a malformed one, a repo deleted since) are moved to
``failed/`` with the reason beside them rather than retried for ever.

Stdlib only: ``ah`` imports this module, on its failure path only.
"""

from __future__ import annotations

import json
import os
import time

from applikant.fsutil import fsync_dir, write_atomic

__all__ = ["FAILED_DIR", "park", "pending", "read", "remove", "write"]

FAILED_DIR = "failed"
_SUFFIX = ".json"
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


def park(path: str, reason: str) -> str:
    """Move an event am refused for good to ``failed/``, with ``<name>.reason``."""
    directory = os.path.join(os.path.dirname(path), FAILED_DIR)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    target = os.path.join(directory, os.path.basename(path))
    with open(target + ".reason", "w", encoding="utf-8") as f:
        f.write(reason + "\n")
    os.rename(path, target)
    fsync_dir(directory)
    fsync_dir(os.path.dirname(path))
    return target
