"""af's copy of what am decides for this git host: sshd's keys, and the repos of
the shared store when this af manages it.

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
after each batch of events from lines made once per key (keysfile.py), so a key
added in am works within milliseconds, also among 100,000. When the file cannot
be written (a full disk) the last good one stays in place, the error is logged
and shown in af's status, and the write is tried again every ``KEYS_RETRY``
seconds: af never stops over it. ``keys_mode = "command"``: nothing is kept;
sshd asks ``keys-for`` at each login (see auth.py). Keys are per host: every af
keeps its own sshd's. A snapshot (all keys, all repos) is read from am a page
at a time.

Repos live in one store shared by every git host (repomanager.py): only the af
that manages it (``store.manages``) creates, renames and deletes them as am's
events say, and reconciles the store with am on each resync (repoops.py: the
intent journal is replayed first; missing repos are created, missed renames
followed by id, nothing deleted). The other afs ignore repo events: they see the
result through the shared file system. An af that becomes the manager asks for
a resync (:meth:`Mirror.request_resync`), which reconciles what happened while
nobody managed the store.
"""

from __future__ import annotations

from typing import Any, Protocol

import trio

from applikant.amclient import AmClient, AmError, AmRefused
from applikant.frontend.keysfile import KeysFile
from applikant.frontend.repodisk import CommandRefused, RepoDiskError
from applikant.frontend.repoops import RepoOps
from applikant.logs import EventLog
from applikant.node.node import CallContext

__all__ = ["EVENTS_SERVICE", "RESYNC", "Mirror", "Store"]

log = EventLog("af")

#: Local service name am casts change events to.
EVENTS_SERVICE = "af_events"
RESYNC: dict[str, Any] = {"kind": "_resync"}
AM_TIMEOUT = 10.0
QUEUE_SIZE = 10000
PAGE = 1000  # items per page of am's lists in a snapshot
KEYS_RETRY = 2.0  # seconds between attempts to write a keys file the disk refused


class Store(Protocol):
    """What the mirror needs of the store role: may it change repos, and how."""

    @property
    def manages(self) -> bool: ...

    ops: RepoOps


class Mirror:
    """Applies am's events and snapshots to the keys file and the repo root."""

    def __init__(
        self, link: AmClient, store: Store, *, keys_mode: str, keys_file: str, as_command: str
    ) -> None:
        if keys_mode not in ("file", "command"):
            raise ValueError(f"af.keys_mode must be 'file' or 'command', not {keys_mode!r}")
        self.link = link
        self.store = store
        self.keys_mode = keys_mode
        self.keys_file = keys_file
        self.as_command = as_command
        self.keys = KeysFile(keys_file, as_command)
        # A full snapshot has been applied since the last connect, and no other
        # asked for since (af's status says "synced" only then: tests wait on it).
        self.synced = False
        self._resyncs_asked = 0
        self.applied = 0  # events applied (tests wait on it)
        self.keys_written = 0  # times the keys file was written (status, tests)
        self.keys_error = ""  # why the last write failed; empty once one succeeds
        self._send, self._recv = trio.open_memory_channel[dict[str, Any]](QUEUE_SIZE)
        self._dirty = False

    # ---- feeding the queue ------------------------------------------------

    async def on_connect(self) -> None:
        """AmClient callback, after the subscription to am's events: queue a resync."""
        self.request_resync()

    def request_resync(self) -> None:
        """Fetch the full state again (this af has just become the store's manager)."""
        self.synced = False
        self._resyncs_asked += 1
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

    async def _every(self, service: str, method: str) -> list[Any]:
        """Every item of one of am's paged lists."""
        items: list[Any] = []
        cursor = None
        while True:
            page = await self.link.call(
                service, method, {"limit": PAGE, "cursor": cursor}, timeout=AM_TIMEOUT
            )
            items += page["items"]
            cursor = page["next"]
            if cursor is None:
                return items

    async def _reload_keys(self) -> None:
        self.keys.replace(await self._every("am_user_db", "all_keys"))
        self._dirty = True

    async def _resync(self) -> None:
        asked = self._resyncs_asked
        if self.keys_mode == "file":
            await self._reload_keys()
            await self._write_keys()
        repos: list[Any] = []
        if self.store.manages:
            repos = await self._every("am_repo_db", "list_repos")
            await trio.to_thread.run_sync(self.store.ops.reconcile, repos)
        self.synced = self._resyncs_asked == asked  # else another one is queued
        log.info("resynced", keys=len(self.keys), repos=len(repos), manages=self.store.manages)

    async def _apply(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        if kind.startswith(("key.", "user.")) and self.keys_mode == "file":
            await self._apply_key_event(kind, event)
        elif not kind.startswith("repo.") or not self.store.manages:
            return
        ops = self.store.ops
        if kind == "repo.created" or (kind == "repo.updated" and "default_branch" in event):
            repo = await self._fetch_repo(str(event.get("repo")))
            if repo is not None:
                await trio.to_thread.run_sync(ops.ensure, repo)
        elif kind == "repo.renamed":
            await trio.to_thread.run_sync(
                ops.rename, str(event.get("old")), str(event.get("new")), str(event.get("id") or "")
            )
        elif kind == "repo.deleted":
            await trio.to_thread.run_sync(
                ops.delete, str(event.get("repo")), str(event.get("id") or "")
            )

    async def _apply_key_event(self, kind: str, event: dict[str, Any]) -> None:
        if kind == "key.added":
            key = await self.link.call(
                "am_user_db",
                "find_key",
                {"fingerprint": event.get("fingerprint")},
                timeout=AM_TIMEOUT,
            )
            if isinstance(key, dict) and self.keys.add(key):
                self._dirty = True
        elif kind == "key.removed":
            if self.keys.remove(str(event.get("fingerprint"))):
                self._dirty = True
        elif kind == "user.disabled":
            if self.keys.remove_user(str(event.get("user"))):
                self._dirty = True
        elif kind in ("user.enabled", "user.deleted"):
            await self._reload_keys()

    async def _write_keys(self) -> None:
        if not self._dirty or self.keys_mode != "file":
            return
        try:
            await trio.to_thread.run_sync(self.keys.write, self.keys.lines())
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
