"""The running manager: the store opened three ways, writes off the event loop,
change events to subscribers, and who may do what.

Three connections to the one database (a SQLite file, where WAL lets readers run
beside the writer; or a PostgreSQL database, store/postgres.py):
- `writer`: every change, always in a worker thread (a commit waits for fsync,
  milliseconds), one at a time under `_write_lock`, so the change events of
  each write reach subscribers in commit order;
- `reader`: read-only, used directly on the trio thread for point lookups
  (check_access, a key by fingerprint, the actor's account): tens of
  microseconds, cheaper than a hop to a thread, and never waiting on the writer;
- `bulk`: read-only, in a worker thread, for listings that may be large
  (all keys, all repositories, audit queries), so they never stall the loop.

Authorization happens here, before the store is asked: see `actor`, `require_*`.

A disk reserve (applikant.diskspace, `[node] disk_reserve_mb`): below it,
`write` refuses new changes with `Unavailable` and words, while
`write_reserved` lets work already accepted finish (a push's record and its
builds, running builds, webhook bookkeeping, pruning) and the bookkeeping of
reads (logins, a session's, token's or key's last use) in the space kept for
it. On PostgreSQL am keeps no reserve (manager/daemon.py says why).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import trio

from applikant.diskspace import Reserve
from applikant.links import Links
from applikant.logs import EventLog
from applikant.manager.errors import Forbidden, NotFound, Unavailable
from applikant.manager.names import parse_repo_path
from applikant.manager.notify import Subscribers
from applikant.manager.observer import Observer
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Event, Store
from applikant.manager.store.engines import backend_for, is_url
from applikant.manager.store.rows import parse_id
from applikant.node.node import Handler, Node
from applikant.schema.repos import AccessDecision

log = EventLog("am")

T = TypeVar("T")

KDF_PARALLEL = 4  # password hashes at once (64 MiB of memory each)
#: Pages up to this size are read on the trio thread (a fraction of a millisecond,
#: less than the hop to a worker thread); larger ones, and searches, on `bulk`.
INLINE_PAGE = 200


@dataclass(frozen=True, slots=True)
class Actor:
    """Who a call acts for, once checked: `system` or an enabled user."""

    id: str
    login: str
    is_admin: bool

    @property
    def is_system(self) -> bool:
        return self.id == SYSTEM


SYSTEM_ACTOR = Actor(SYSTEM, SYSTEM, True)


class Manager:
    """State shared by am's services; see the module docstring."""

    def __init__(
        self,
        path: str,
        node: Node,
        passwords: Passwords | None = None,
        *,
        lease: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        self.path = path
        self.node = node
        self._collected: list[Event] = []
        # One hasher for the three stores: making one costs a hash (~0.5 s).
        passwords = passwords if passwords is not None else Passwords()
        self.writer = Store(
            path,
            on_change=self._collected_append,
            passwords=passwords,
            backend=backend_for(path, lease=lease, timeout=timeout),
        )
        try:
            self.reader = Store(
                path,
                passwords=passwords,
                read_only=True,
                backend=backend_for(path, timeout=timeout),
            )
            self.bulk = Store(
                path,
                passwords=passwords,
                read_only=True,
                backend=backend_for(path, timeout=timeout),
            )
        except BaseException:
            self.writer.close()
            raise
        #: The database's errors for "cannot be reached" and "lost the lease":
        #: the services answer them as Unavailable, and set `trouble`.
        self.unavailable = self.writer.core.backend.unavailable_errors
        self.trouble = trio.Event()
        self._write_lock = trio.Lock()
        self._bulk_limiter = trio.CapacityLimiter(1)
        self._kdf_limiter = trio.CapacityLimiter(KDF_PARALLEL)
        self.subscribers = Subscribers(node)
        self.observer = Observer(node.name)
        #: Each service's handlers by method (services.start): as_token calls them.
        self.handlers: dict[str, dict[str, Handler]] = {}
        self.writes = 0
        self.reserve = Reserve([], 0)  # set by the daemon from the config
        # Called on the trio thread after each write, with its events (the
        # webhook worker's wake-up).
        self.listeners: list[Callable[[list[Event]], None]] = []
        # Where people reach aw (messages to pushers, webhook payloads); set
        # from the config when the services start.
        self.links = Links("http://127.0.0.1:8008")

    def close(self) -> None:
        for store in (self.bulk, self.reader, self.writer):
            store.close()

    def _collected_append(self, event: Event) -> None:
        # Called in the writer's thread while the write lock is held.
        self._collected.append(event)

    # ---- running the store ----------------------------------------------------

    async def write(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> tuple[T, list[Event]]:
        """Run one store change in a worker thread; return its result and its events.

        Changes run one at a time. The events are handed to the subscribers before
        the next change starts, so every subscriber sees them in commit order. A
        cancelled caller does not stop a change already running: it is committed
        (and announced) or not, never half done. Below the disk reserve it
        raises `Unavailable` and changes nothing.
        """
        self.check_reserve()
        return await self.write_reserved(fn, *args, **kwargs)

    def check_reserve(self) -> None:
        """`Unavailable` with words when am's disk is below its reserve."""
        shortfall = self.reserve.shortfall()
        if shortfall is not None:
            raise Unavailable(
                f"the manager's disk is nearly full ({shortfall}); nothing changed. "
                "Free space on it, or lower [node] disk_reserve_mb"
            )

    async def write_reserved(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> tuple[T, list[Event]]:
        """`write`, also below the disk reserve: for work already accepted."""
        async with self._write_lock:
            self._collected = []
            try:
                result = await trio.to_thread.run_sync(partial(fn, *args, **kwargs))
            finally:
                events, self._collected = self._collected, []
                self.writes += 1
                for event in events:
                    self.subscribers.publish(event)
                for listener in self.listeners:
                    listener(events)
        return result, events

    async def bulk_read(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a large read on the bulk connection in a worker thread."""
        return await trio.to_thread.run_sync(
            partial(fn, *args, **kwargs), limiter=self._bulk_limiter
        )

    async def read_page(
        self,
        part: Callable[[Store], Callable[..., T]],
        /,
        limit: int,
        *,
        scan: bool = False,
        **kwargs: Any,
    ) -> T:
        """One page of a list: `part(store)` is the store's page method (e.g.
        `lambda s: s.repos.page`), run with `limit` and `kwargs` on the reader
        for a small page, on the bulk connection in a worker thread for a large
        one or one that may `scan` (a search)."""
        if limit <= INLINE_PAGE and not scan:
            return part(self.reader)(limit=limit, **kwargs)
        return await self.bulk_read(part(self.bulk), limit=limit, **kwargs)

    async def hash_work(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a password verification (tens of ms of KDF) in a worker thread."""
        return await trio.to_thread.run_sync(
            partial(fn, *args, **kwargs), limiter=self._kdf_limiter
        )

    # ---- authorization --------------------------------------------------------

    def actor(self, actor: str) -> Actor:
        """The checked actor; Forbidden for anything but `system` or an enabled user."""
        if actor == SYSTEM:
            return SYSTEM_ACTOR
        if parse_id(actor, "user") is None:
            raise Forbidden(f"actor {actor[:80]!r} is neither system nor a user id (user-42)")
        try:
            user = self.reader.users.get(actor)
        except NotFound:
            raise Forbidden(f"actor {actor} has no account") from None
        if user.disabled:
            raise Forbidden(f"account {actor} ({user.login}) is disabled")
        return Actor(user.id, user.login, user.is_admin)

    def require_admin(self, actor: Actor, what: str) -> None:
        if not actor.is_admin:
            raise Forbidden(f"only site admins may {what}; {actor.login} is not one")

    def is_self(self, actor: Actor, user_ref: str) -> bool:
        """True when `user_ref` (id or login) names the actor's own account."""
        if actor.is_system:
            return False
        return user_ref == actor.id or user_ref.casefold() == actor.login.casefold()

    def require_self_or_admin(self, actor: Actor, user_ref: str, what: str) -> None:
        if actor.is_admin or self.is_self(actor, user_ref):
            return
        raise Forbidden(f"{actor.login} may {what} of their own account only")

    def require_repo(self, actor: Actor, repo: str, level: str) -> AccessDecision | None:
        """Refuse unless the actor has `level` on `repo`.

        Someone who cannot even read the repository is told it does not exist
        (NotFound with the same words as for a missing one); a reader who lacks
        write or admin gets Forbidden. Site admins pass (the store then reports
        a missing repository plainly).
        """
        if actor.is_admin:
            return None
        decision = self.reader.access.check(actor.id, repo, level)
        if decision.allowed:
            return decision
        if decision.level is None:
            raise NotFound(decision.reason)
        raise Forbidden(decision.reason)

    def require_namespace(self, actor: Actor, path: str) -> str:
        """Refuse unless the actor may create repositories under `path`'s owner:
        their own login, or a group they belong to. Returns the owner name."""
        owner, _ = parse_repo_path(path)
        if actor.is_admin:
            return owner
        if owner.casefold() == actor.login.casefold():
            return owner
        groups = {g.casefold() for g in self.reader.groups.of(actor.id)}
        if owner.casefold() in groups:
            return owner
        raise Forbidden(
            f"{actor.login} may create repositories under {actor.login}/ "
            f"or a group they belong to, not under {owner}/"
        )


def open_manager(
    path: str,
    node: Node,
    passwords: Passwords | None = None,
    *,
    lease: int | None = None,
    timeout: float = 5.0,
) -> Manager:
    """Open (and migrate) the database at `path` (a SQLite file, whose directory
    is made, or a PostgreSQL URL; `lease` and `timeout` are PostgreSQL's)."""
    if not is_url(path):
        directory = os.path.dirname(os.path.abspath(path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
    return Manager(path, node, passwords, lease=lease, timeout=timeout)
