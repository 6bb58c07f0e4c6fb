"""The repository operations of the af that manages the shared store, journaled.

Only the holder of ``af_repo_manager`` runs these (see repomanager.py); the other
git hosts see the result through the shared file system. Each operation that
changes the store is written to the intent journal (:class:`~applikant.frontend.
repostore.Journal`) before it starts and removed from it after it ends, so an af
that takes over after the holder died finishes it, or rolls it back when am no
longer wants it (:meth:`RepoOps.reconcile` replays the journal first).

Repos carry their am id in ``<repo>/applikant-id``: a rename that was missed is
followed by id, and a repo whose id differs from am's (deleted and re-created
while no af managed the store) is moved aside under a hidden ``.orphaned-*`` name
rather than handed to the new repo's readers. Nothing here deletes a repository
on the word of a list alone: a repo on disk that am does not know is logged.

Test-only fault hook: with ``APPLIKANT_TEST_FAULT=stop-after-intent`` (or
``stop-after-intent:<op>`` for one of ``create``, ``rename``, ``delete``) the
operation stops for good right after its intent is durable and before it is acted
on (its thread blocks; the rest of af goes on): what a crash at that point leaves
behind, once a test kills the process.

Blocking code, run in a worker thread.
"""

from __future__ import annotations

import os
import threading
from functools import partial
from typing import Any

from applikant.frontend.repodisk import CommandRefused, RepoDisk, RepoDiskError
from applikant.frontend.repostore import Journal
from applikant.fsutil import write_atomic
from applikant.logs import EventLog

__all__ = ["FAULT_ENV", "ID_FILE", "RepoOps"]

log = EventLog("af")

ID_FILE = "applikant-id"
FAULT_ENV = "APPLIKANT_TEST_FAULT"
_RECOVERABLE = (RepoDiskError, CommandRefused, OSError)


class RepoOps:
    """Journaled create / rename / delete on ``disk``; ``node`` signs the intents."""

    def __init__(self, disk: RepoDisk, node: str) -> None:
        self.disk = disk
        self.node = node
        self.journal = Journal(disk.root)

    # ---- ids --------------------------------------------------------------------

    def read_id(self, repo: str) -> str | None:
        try:
            with open(os.path.join(self.disk.path(repo), ID_FILE), encoding="utf-8") as f:
                return f.read().strip() or None
        except (OSError, CommandRefused):
            return None

    def _write_id(self, repo: str, repo_id: str) -> None:
        _write_id_at(self.disk.path(repo), repo_id)

    # ---- the journal ------------------------------------------------------------

    def _begin(self, intent: dict[str, Any]) -> str:
        path = self.journal.begin({**intent, "by": self.node})
        fault = os.environ.get(FAULT_ENV, "")
        if fault in ("stop-after-intent", f"stop-after-intent:{intent['op']}"):
            log.warning("test_fault", fault=fault, intent=os.path.basename(path))
            threading.Event().wait()  # never set
        return path

    # ---- operations (each idempotent) -------------------------------------------------

    def ensure(self, repo: dict[str, Any]) -> str:
        """Create ``repo`` (an am Repo as a dict: full_name, id, default_branch)
        unless it is there with its id; repair its hooks and HEAD; its path."""
        name, repo_id = str(repo["full_name"]), str(repo.get("id") or "")
        branch = str(repo.get("default_branch") or "main")
        self.disk.path(name)  # a bad name fails before anything is journaled
        found = self.read_id(name) if self.disk.exists(name) else None
        if self.disk.exists(name) and not (found and repo_id and found != repo_id):
            if not found and repo_id:
                self._write_id(name, repo_id)
            path = self.disk.create(name, default_branch=branch)  # re-links hooks only
            _set_head(path, branch)
            return path
        intent = self._begin(
            {"op": "create", "repo": name, "id": repo_id, "default_branch": branch}
        )
        if not self.journal.still_open(intent):
            return self.disk.path(name)  # another af finished it meanwhile
        path = self._create(name, repo_id, branch)
        self.journal.done(intent)
        log.info("repo_created", repo=name)
        return path

    def _create(self, name: str, repo_id: str, branch: str) -> str:
        if self.disk.exists(name):
            found = self.read_id(name)
            if found and repo_id and found != repo_id:
                self._set_aside(name, found)
        # The id goes in before the repo is moved into place: a repo seen without
        # its id would look like one am does not know.
        path = self.disk.create(
            name,
            default_branch=branch,
            prepare=partial(_write_id_at, repo_id=repo_id) if repo_id else None,
        )
        if repo_id and self.read_id(name) != repo_id:
            self._write_id(name, repo_id)  # it was there already (made meanwhile)
        return path

    def _set_aside(self, name: str, old_id: str) -> None:
        src = self.disk.path(name)
        dst = os.path.join(
            self.disk.root, f".orphaned-{name.replace('/', '-')}-{old_id}-{os.urandom(3).hex()}"
        )
        os.rename(src, dst)
        log.warning("repo_set_aside", repo=name, old_id=old_id, moved_to=dst)

    def rename(self, old: str, new: str, repo_id: str = "") -> str | None:
        """Follow am's rename of ``old`` to ``new``; the new path, or None when
        there was nothing to move (done already, or ``new`` is taken)."""
        self.disk.path(old), self.disk.path(new)
        if not self.disk.exists(old) or self.disk.exists(new):
            return None
        intent = self._begin({"op": "rename", "old": old, "new": new, "id": repo_id})
        path = self._rename(old, new) if self.journal.still_open(intent) else None
        self.journal.done(intent)
        return path

    def _rename(self, old: str, new: str) -> str | None:
        if not self.disk.exists(old) or self.disk.exists(new):
            return None
        path = self.disk.rename(old, new)
        log.info("repo_renamed", old=old, new=new)
        return path

    def delete(self, name: str, repo_id: str = "") -> bool:
        """Remove ``name`` when it is there and carries ``repo_id`` (another repo
        may have taken the name since); whether it was removed."""
        self.disk.path(name)
        if not self._deletable(name, repo_id):
            return False
        intent = self._begin({"op": "delete", "repo": name, "id": repo_id})
        removed = self._delete(name, repo_id) if self.journal.still_open(intent) else False
        self.journal.done(intent)
        return removed

    def _deletable(self, name: str, repo_id: str) -> bool:
        if not self.disk.exists(name):
            return False
        found = self.read_id(name)
        return not (found and repo_id and found != repo_id)

    def _delete(self, name: str, repo_id: str) -> bool:
        if not self._deletable(name, repo_id):
            return False
        self.disk.delete(name)
        log.info("repo_deleted", repo=name)
        return True

    # ---- taking over ----------------------------------------------------------------

    def replay(self, repos: list[dict[str, Any]]) -> int:
        """Finish (or roll back) the operations the journal holds, oldest first,
        given am's repos now; how many there were. A create am no longer wants is
        rolled back (the half-made repo removed); the rest are finished."""
        wanted = {str(r.get("id")): r for r in repos if r.get("id")}
        intents, problems = self.journal.pending()
        for problem in problems:
            log.error("intent_unreadable", problem=problem)
        for path, intent in intents:
            op = intent.get("op")
            try:
                if op == "create":
                    repo_id = str(intent.get("id") or "")
                    if not repo_id or repo_id in wanted:
                        self._create(
                            str(intent["repo"]),
                            repo_id,
                            str(intent.get("default_branch") or "main"),
                        )
                    else:  # am dropped it since: undo
                        self._delete(str(intent["repo"]), repo_id)
                elif op == "rename":
                    self._rename(str(intent["old"]), str(intent["new"]))
                elif op == "delete":
                    self._delete(str(intent["repo"]), str(intent.get("id") or ""))
                else:
                    log.error("intent_unknown", op=op, intent=os.path.basename(path))
            except (*_RECOVERABLE, KeyError) as exc:
                log.error("intent_failed", op=op, intent=os.path.basename(path), reason=str(exc))
            else:
                log.info(
                    "intent_replayed", op=op, by=intent.get("by"), intent=os.path.basename(path)
                )
            self.journal.done(path)
        self.disk.purge_trash()
        return len(intents)

    def reconcile(self, repos: list[Any]) -> None:
        """Make the store hold am's ``repos``: replay the journal, follow renames
        that were missed (by id), create what is missing. Never deletes."""
        wanted = [r for r in repos if isinstance(r, dict) and isinstance(r.get("full_name"), str)]
        self.replay(wanted)
        on_disk = set(self.disk.list())
        by_id = {self.read_id(name): name for name in on_disk}
        by_id.pop(None, None)
        for repo in wanted:
            name, repo_id = repo["full_name"], str(repo.get("id") or "")
            old = by_id.get(repo_id)
            if old and old != name and not self.disk.exists(name):
                try:
                    self.rename(old, name, repo_id)
                except _RECOVERABLE as exc:
                    log.error("repo_rename_failed", old=old, new=name, reason=str(exc))
            try:
                self.ensure(repo)
            except _RECOVERABLE as exc:
                log.error("repo_create_failed", repo=name, reason=str(exc))
        known = {r["full_name"] for r in wanted}
        for name in sorted(set(self.disk.list()) - known):
            log.warning("repo_unknown_to_am", repo=name)


def _set_head(path: str, branch: str) -> None:
    head = os.path.join(path, "HEAD")
    want = f"ref: refs/heads/{branch}\n"
    try:
        with open(head, encoding="utf-8") as f:
            if f.read() == want:
                return
    except OSError:
        pass
    write_atomic(head, want, mode=0o644)


def _write_id_at(path: str, repo_id: str) -> None:
    write_atomic(os.path.join(path, ID_FILE), repo_id + "\n", mode=0o644)
