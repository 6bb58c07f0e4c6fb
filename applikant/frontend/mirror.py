"""af's copy of what am decides for this git host: sshd's keys and the repos on disk.

am casts a change event to af (local service ``af_events``, method ``changed``)
for every committed change; af's link to am subscribes on each (re)connect. Events go into
one queue and one task applies them in order, so a key added then removed
always ends removed. On each (re)connect the link puts a *resync* marker in the
same queue: the task then fetches the full state (all keys, all repos) and
replaces its copy, and the events queued behind the marker are applied on top.
Every operation is idempotent (keyed by fingerprint, repo id), so an event that
the snapshot already contained changes nothing. Events queued before the marker
are dropped: the snapshot is newer than them.

Keys, ``keys_mode = "file"``: the authorized_keys file is rewritten atomically
(:func:`applikant.frontend.authkeys.write_atomic`) after each batch of events,
so a key added in am works within milliseconds. When the file cannot be
written (a full disk) the last good one stays in place, the error is logged
and shown in af's status, and the write is tried again every
``KEYS_RETRY`` seconds: af never stops over it. ``keys_mode = "command"``:
nothing is kept; sshd asks ``keys-for`` at each login (see auth.py).

Repos: created, renamed and deleted on disk as am's events say. The resync
creates what is missing and follows renames it missed (each repo carries its
am id in ``<repo>/applikant-id``); it never deletes: a repo on disk that am
does not know is logged, because deleting data on the word of a freshly
restored am database would be worse than an orphan. A repo whose id differs
from am's (deleted and re-created while af was away) is moved aside under a
hidden ``.orphaned-*`` name rather than handed to the new repo's readers.
"""

from __future__ import annotations

import os
from typing import Any

import trio

from applikant.amclient import AmClient, AmError, AmRefused
from applikant.frontend import authkeys
from applikant.frontend.repodisk import CommandRefused, RepoDisk, RepoDiskError
from applikant.logs import EventLog
from applikant.node.node import CallContext

__all__ = ["EVENTS_SERVICE", "ID_FILE", "RESYNC", "Mirror"]

log = EventLog("af")

#: Local service name am casts change events to.
EVENTS_SERVICE = "af_events"
RESYNC: dict[str, Any] = {"kind": "_resync"}
ID_FILE = "applikant-id"
AM_TIMEOUT = 10.0
QUEUE_SIZE = 10000
KEYS_RETRY = 2.0  # seconds between attempts to write a keys file the disk refused


class Mirror:
    """Applies am's events and snapshots to the keys file and the repo root."""

    def __init__(
        self, link: AmClient, disk: RepoDisk, *, keys_mode: str, keys_file: str, as_command: str
    ) -> None:
        if keys_mode not in ("file", "command"):
            raise ValueError(f"af.keys_mode must be 'file' or 'command', not {keys_mode!r}")
        authkeys._check_as_command(as_command)  # fail at start, not at the first key
        self.link = link
        self.disk = disk
        self.keys_mode = keys_mode
        self.keys_file = keys_file
        self.as_command = as_command
        self.keys: dict[str, tuple[str, str]] = {}  # fingerprint -> (user id, key line)
        self.synced = False  # a full snapshot has been applied since the last connect
        self.applied = 0  # events applied (tests wait on it)
        self.keys_written = 0  # times the keys file was written (status, tests)
        self.keys_error = ""  # why the last write failed; empty once one succeeds
        self._send, self._recv = trio.open_memory_channel[dict[str, Any]](QUEUE_SIZE)
        self._dirty = False

    # ---- feeding the queue ------------------------------------------------

    async def on_connect(self) -> None:
        """AmClient callback, after the subscription to am's events: queue a resync."""
        self.synced = False
        self._put(RESYNC)

    async def changed(self, ctx: CallContext, event: Any) -> None:
        """Handler of ``af_events.changed``: queue the event."""
        if isinstance(event, dict) and isinstance(event.get("kind"), str):
            self._put(event)

    def _put(self, event: dict[str, Any]) -> None:
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            # Too many events at once: a snapshot covers them all.
            log.warning("event_queue_full")
            self._drain_queue()
            self._send.send_nowait(RESYNC)

    def _drain_queue(self) -> None:
        while True:
            try:
                self._recv.receive_nowait()
            except trio.WouldBlock:
                return

    # ---- applying ---------------------------------------------------------

    async def run(self) -> None:
        """The one task that applies events, batch by batch."""
        while True:
            batch = []
            with trio.move_on_after(KEYS_RETRY if self.keys_error else float("inf")):
                batch = [await self._recv.receive()]
            while True:
                try:
                    batch.append(self._recv.receive_nowait())
                except trio.WouldBlock:
                    break
            last_resync = max((i for i, e in enumerate(batch) if e is RESYNC), default=-1)
            if last_resync >= 0:
                batch = batch[last_resync + 1 :]
                try:
                    await self._resync()
                except AmError as exc:
                    # The link reports am down and queues another resync on return.
                    log.warning("resync_failed", reason=str(exc))
                    continue
                except (RepoDiskError, CommandRefused, OSError) as exc:
                    log.error("resync_failed", reason=str(exc))
                    await trio.sleep(KEYS_RETRY)
                    self._put(RESYNC)
                    continue
            for event in batch:
                try:
                    await self._apply(event)
                except AmError as exc:
                    log.warning("event_failed", kind=event.get("kind"), reason=str(exc))
                except (RepoDiskError, CommandRefused, OSError) as exc:
                    log.error("event_failed", kind=event.get("kind"), reason=str(exc))
                self.applied += 1
            await self._write_keys()

    async def _resync(self) -> None:
        if self.keys_mode == "file":
            keys = await self.link.call("am_user_db", "all_keys", {}, timeout=AM_TIMEOUT)
            self.keys = {}
            for key in keys:
                self._add_key(key)
            self._dirty = True
            await self._write_keys()
        repos = await self.link.call("am_repo_db", "list_repos", {}, timeout=AM_TIMEOUT)
        await trio.to_thread.run_sync(self._reconcile_repos, list(repos))
        self.synced = True
        log.info("resynced", keys=len(self.keys), repos=len(repos))

    async def _apply(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind.startswith(("key.", "user.")) and self.keys_mode == "file":
            await self._apply_key_event(kind, event)
        elif kind == "repo.created" or (kind == "repo.updated" and "default_branch" in event):
            repo = await self._fetch_repo(str(event.get("repo")))
            if repo is not None:
                await trio.to_thread.run_sync(self._ensure_repo, repo)
        elif kind == "repo.renamed":
            await trio.to_thread.run_sync(
                self._rename, str(event.get("old")), str(event.get("new"))
            )
        elif kind == "repo.deleted":
            await trio.to_thread.run_sync(self._delete, str(event.get("repo")), event.get("id"))

    async def _apply_key_event(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "key.added":
            key = await self.link.call(
                "am_user_db",
                "find_key",
                {"fingerprint": event.get("fingerprint")},
                timeout=AM_TIMEOUT,
            )
            if key:
                self._add_key(key)
                self._dirty = True
        elif kind == "key.removed":
            if self.keys.pop(str(event.get("fingerprint")), None) is not None:
                self._dirty = True
        elif kind == "user.disabled":
            user = event.get("user")
            for fp in [fp for fp, (uid, _) in self.keys.items() if uid == user]:
                del self.keys[fp]
                self._dirty = True
        elif kind in ("user.enabled", "user.deleted"):
            keys = await self.link.call("am_user_db", "all_keys", {}, timeout=AM_TIMEOUT)
            self.keys = {}
            for key in keys:
                self._add_key(key)
            self._dirty = True

    def _add_key(self, key: Any) -> None:
        if isinstance(key, dict) and isinstance(key.get("fingerprint"), str):
            self.keys[key["fingerprint"]] = (str(key.get("user")), str(key.get("public_key")))

    async def _write_keys(self) -> None:
        if not self._dirty or self.keys_mode != "file":
            return
        content = authkeys.render(list(self.keys.values()), self.as_command)
        try:
            await trio.to_thread.run_sync(_write_keys_file, self.keys_file, content)
        except OSError as exc:
            if not self.keys_error:
                log.error(
                    "keys_write_failed",
                    path=self.keys_file,
                    reason=str(exc),
                    note="the last good file stays in place; retrying",
                )
            self.keys_error = str(exc)
            return
        if self.keys_error:
            log.info("keys_written_again", path=self.keys_file)
        self._dirty = False
        self.keys_error = ""
        self.keys_written += 1

    async def _fetch_repo(self, full_name: str) -> dict[str, Any] | None:
        try:
            repo = await self.link.call(
                "am_repo_db", "get_repo", {"repo": full_name}, timeout=AM_TIMEOUT
            )
        except AmRefused as exc:
            if exc.kind == "not_found":
                return None  # deleted again since; its own event follows
            raise
        return repo if isinstance(repo, dict) else None

    # ---- repos on disk (run in a worker thread) -----------------------------

    def read_id(self, repo: str) -> str | None:
        try:
            with open(os.path.join(self.disk.path(repo), ID_FILE), encoding="utf-8") as f:
                return f.read().strip() or None
        except (OSError, CommandRefused):
            return None

    def _write_id(self, repo: str, repo_id: str) -> None:
        path = os.path.join(self.disk.path(repo), ID_FILE)
        authkeys.write_atomic(path, repo_id + "\n", mode=0o644)

    def _ensure_repo(self, repo: dict[str, Any]) -> str:
        """Create ``repo`` (an am Repo as a dict) unless it is there with its id."""
        name, repo_id = str(repo["full_name"]), str(repo.get("id") or "")
        branch = str(repo.get("default_branch") or "main")
        if self.disk.exists(name):
            found = self.read_id(name)
            if found and repo_id and found != repo_id:
                self._set_aside(name, found)
            elif not found and repo_id:
                self._write_id(name, repo_id)
        created = not self.disk.exists(name)
        path = self.disk.create(name, default_branch=branch)
        if repo_id:
            self._write_id(name, repo_id)
        if not created:
            _set_head(path, branch)
        else:
            log.info("repo_created", repo=name)
        return path

    def _set_aside(self, name: str, old_id: str) -> None:
        src = self.disk.path(name)
        dst = os.path.join(
            self.disk.root, f".orphaned-{name.replace('/', '-')}-{old_id}-{os.urandom(3).hex()}"
        )
        os.rename(src, dst)
        log.warning("repo_set_aside", repo=name, old_id=old_id, moved_to=dst)

    def _rename(self, old: str, new: str) -> None:
        if self.disk.exists(old) and not self.disk.exists(new):
            self.disk.rename(old, new)
            log.info("repo_renamed", old=old, new=new)

    def _delete(self, name: str, repo_id: Any) -> None:
        if not self.disk.exists(name):
            return
        found = self.read_id(name)
        if found and repo_id and found != repo_id:
            return  # another repo took the name since; not the one am deleted
        self.disk.delete(name)
        log.info("repo_deleted", repo=name)

    def _reconcile_repos(self, repos: list[Any]) -> None:
        wanted = [r for r in repos if isinstance(r, dict) and isinstance(r.get("full_name"), str)]
        on_disk = set(self.disk.list())
        by_id = {self.read_id(name): name for name in on_disk}
        by_id.pop(None, None)
        for repo in wanted:
            name, repo_id = repo["full_name"], str(repo.get("id") or "")
            # A rename that happened while af was away: the id is on disk under the old name.
            old = by_id.get(repo_id)
            if old and old != name and not self.disk.exists(name):
                try:
                    self.disk.rename(old, name)
                    log.info("repo_renamed", old=old, new=name, during="resync")
                except (RepoDiskError, CommandRefused) as exc:
                    log.error("repo_rename_failed", old=old, new=name, reason=str(exc))
            try:
                self._ensure_repo(repo)
            except (RepoDiskError, CommandRefused, OSError) as exc:
                log.error("repo_create_failed", repo=name, reason=str(exc))
        known = {r["full_name"] for r in wanted}
        for name in sorted(set(self.disk.list()) - known):
            log.warning("repo_unknown_to_am", repo=name)

    def ensure_now(self, repo: dict[str, Any]) -> str:
        """Create ``repo`` at once (af_auth found it in am but not on disk)."""
        return self._ensure_repo(repo)


def _set_head(path: str, branch: str) -> None:
    head = os.path.join(path, "HEAD")
    want = f"ref: refs/heads/{branch}\n"
    try:
        with open(head, encoding="utf-8") as f:
            if f.read() == want:
                return
    except OSError:
        pass
    authkeys.write_atomic(head, want, mode=0o644)


def _write_keys_file(path: str, content: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    authkeys.write_atomic(path, content, mode=0o600)
