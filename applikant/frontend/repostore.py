"""The shared repository store on disk: the cluster's marker, the intent journal,
the probes that prove two hosts see one file system.

Several git hosts share one repository root through a shared file system (NFS v4,
CephFS, any POSIX file system mounted on every git host and the web host). Three
things in that root keep it one store:

* ``.applikant-cluster``, the **marker**: JSON ``{"cluster", "store", "created",
  "by"}``, written once and never replaced. It is made complete and fsynced under
  a temp name, then ``link(2)``-ed to its name, which fails when a marker is
  already there: it appears whole or not at all, and two writers cannot both win.
  ``cluster`` is the cluster id (:func:`cluster_id`): derived from the cookie by a
  one-way function, so every node of the cluster computes it without asking
  anyone, nobody learns the cookie from it, and a root marked by another cluster
  (another cookie) is refused. ``store`` is random: it tells this root from a copy
  of it (rsync, a restored snapshot) that carries the same cluster id.
* ``.applikant-ops/``, the **intent journal** of the af that manages the store
  (the holder of ``af_repo_manager``): one file per repository operation, written
  and fsynced *before* the operation starts and removed after it ends. An af that
  takes over replays whatever it finds there; every operation is idempotent, so
  replaying a finished one changes nothing.
* ``.applikant-ops/probes/``: a file written by one af and read by another, on
  request, proves that both see the same file system at this moment (the marker
  alone would not tell a live share from a copy).

Stdlib only; every function blocks (af runs them in a worker thread).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

from applikant.fsutil import fsync_dir, write_atomic

__all__ = [
    "MARKER",
    "OPS_DIR",
    "Journal",
    "Marker",
    "MarkerError",
    "cluster_id",
    "has_entries",
    "read_marker",
    "read_probe",
    "remove_probe",
    "rewrite_marker",
    "write_marker",
    "write_probe",
]

MARKER = ".applikant-cluster"
OPS_DIR = ".applikant-ops"
PROBES = "probes"
FAILED = "failed"
_LABEL = b"applikant cluster id v1"
_SUFFIX = ".json"


class MarkerError(Exception):
    """The marker is there but cannot be read as one (the message says why)."""


def cluster_id(cookie: bytes) -> str:
    """The cluster's id: HMAC-SHA256 keyed by the cookie over a fixed label, 32 hex
    digits. Every node holding the cookie computes the same id; the id reveals
    nothing of the cookie (and is no proof of it: the handshake signs fresh
    challenges with node names, never this label). A new cookie makes a new id."""
    return hmac.new(cookie, _LABEL, hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True)
class Marker:
    cluster: str
    store: str
    created: str = ""
    by: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _hexid(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 8 <= len(value) <= 64
        and all(c in "0123456789abcdef" for c in value)
    )


def read_marker(root: str) -> Marker | None:
    """The marker of ``root``; None when it has none. Raises :class:`MarkerError`
    when a file is there that is not a marker (never guessed at)."""
    path = os.path.join(root, MARKER)
    try:
        with open(path, "rb") as f:
            raw = f.read(4096)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MarkerError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise MarkerError(f"{path} is not a marker Applikant wrote (not JSON)") from None
    if (
        not isinstance(data, dict)
        or not _hexid(data.get("cluster"))
        or not _hexid(data.get("store"))
    ):
        raise MarkerError(f"{path} is not a marker Applikant wrote (no cluster and store ids)")
    return Marker(
        data["cluster"], data["store"], str(data.get("created", "")), str(data.get("by", ""))
    )


def write_marker(root: str, cluster: str, by: str) -> tuple[Marker, bool]:
    """Mark ``root`` as ``cluster``'s store unless it is marked already.

    Returns the marker now on disk and whether this call wrote it. The marker is
    complete and fsynced before it gets its name (``link(2)``, which never
    replaces an existing file), and the directory is fsynced after.
    """
    os.makedirs(root, exist_ok=True)
    marker = Marker(
        cluster,
        os.urandom(16).hex(),
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        by,
    )
    tmp = os.path.join(root, f".{MARKER}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    write_atomic(tmp, json.dumps(marker.as_dict(), sort_keys=True) + "\n", mode=0o644)
    try:
        try:
            os.link(tmp, os.path.join(root, MARKER))
            wrote = True
        except FileExistsError:
            wrote = False
    finally:
        os.unlink(tmp)
    fsync_dir(root)
    found = read_marker(root)
    if found is None:  # pragma: no cover - removed between link and read
        raise MarkerError(f"{os.path.join(root, MARKER)} vanished right after it was written")
    return found, wrote


def rewrite_marker(root: str, cluster: str, by: str) -> Marker:
    """Give ``root``'s marker another cluster id, keeping its store id (an operator's
    decision after changing the cookie on purpose); a root with no marker gets one."""
    old = read_marker(root)
    if old is None:
        return write_marker(root, cluster, by)[0]
    new = Marker(cluster, old.store, old.created, by)
    write_atomic(
        os.path.join(root, MARKER), json.dumps(new.as_dict(), sort_keys=True) + "\n", mode=0o644
    )
    return new


def has_entries(root: str) -> bool:
    """Whether ``root`` holds anything but Applikant's own hidden files."""
    try:
        return any(not e.startswith(".") for e in os.listdir(root))
    except FileNotFoundError:
        return False


# ---- probes -----------------------------------------------------------------------


def _probe_dir(root: str) -> str:
    return os.path.join(root, OPS_DIR, PROBES)


def write_probe(root: str) -> tuple[str, str]:
    """A fresh probe file under ``root``: (its name, the token in it)."""
    directory = _probe_dir(root)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    name, token = os.urandom(8).hex(), os.urandom(16).hex()
    write_atomic(os.path.join(directory, name), token, mode=0o600)
    return name, token


def read_probe(root: str, name: str) -> str | None:
    """The token of probe ``name`` under ``root``; None when there is none."""
    if not _hexid(name):
        return None
    try:
        with open(os.path.join(_probe_dir(root), name), encoding="ascii") as f:
            return f.read(64)
    except (OSError, UnicodeDecodeError):
        return None


def remove_probe(root: str, name: str) -> None:
    try:
        os.unlink(os.path.join(_probe_dir(root), name))
    except FileNotFoundError:
        pass


# ---- the intent journal ----------------------------------------------------------------


class Journal:
    """The managing af's intents under ``<root>/.applikant-ops``.

    :meth:`begin` makes an intent durable (fsynced file and directory) and returns
    its path; :meth:`done` removes it durably. :meth:`pending` lists the intents
    still there, oldest first: operations that were started and may not have
    ended. An intent that cannot be read is moved to ``failed/`` (never replayed
    as a guess) and reported.
    """

    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, OPS_DIR)

    def begin(self, intent: dict[str, Any]) -> str:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.urandom(4).hex()}{_SUFFIX}"
        path = os.path.join(self.dir, name)
        write_atomic(path, json.dumps(intent, sort_keys=True), mode=0o600)
        return path

    def still_open(self, path: str) -> bool:
        """Whether the intent at ``path`` is still to be done (another af that
        replayed it has removed it)."""
        return os.path.exists(path)

    def done(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        fsync_dir(self.dir)

    def pending(self) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
        """(intents as (path, intent), oldest first; problems with unreadable ones)."""
        try:
            names = sorted(n for n in os.listdir(self.dir) if n.endswith(_SUFFIX))
        except FileNotFoundError:
            return [], []
        found, problems = [], []
        for name in names:
            path = os.path.join(self.dir, name)
            try:
                with open(path, "rb") as f:
                    intent = json.loads(f.read().decode("utf-8"))
                if not isinstance(intent, dict) or not isinstance(intent.get("op"), str):
                    raise ValueError("not an intent")
            except FileNotFoundError:
                continue  # done by another af meanwhile
            except (OSError, ValueError) as exc:
                problems.append(f"{name}: {exc}")
                self._park(path)
                continue
            found.append((path, intent))
        return found, problems

    def _park(self, path: str) -> None:
        failed = os.path.join(self.dir, FAILED)
        os.makedirs(failed, mode=0o700, exist_ok=True)
        try:
            os.rename(path, os.path.join(failed, os.path.basename(path)))
        except FileNotFoundError:
            return
        fsync_dir(self.dir)
