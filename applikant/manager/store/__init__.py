"""`Store`: the manager's single source of truth, one database in parts.

    store = Store("var/am.sqlite3", on_change=print)
    alice = store.users.add("alice", actor=SYSTEM)
    store.keys.add(alice.id, open("id_ed25519.pub").read(), actor=SYSTEM)
    store.repos.create("alice/project", actor=alice.id)
    store.access.check(alice.id, "alice/project", "write").allowed  # True

The parts, each a small class over the shared core (core.py):
`store.users`, `store.keys`, `store.tokens`, `store.sessions`, `store.groups`, `store.repos`,
`store.access` (grants and decisions), `store.branches` (protection and the
per-ref push decision), `store.audit` (the log's queries and figures),
`store.webhooks`, `store.builds`. One operation may span several parts in one
transaction:

    with store.transaction(actor=SYSTEM):
        team = store.groups.create("team", actor=SYSTEM)
        store.repos.create("team/app", actor=SYSTEM)   # both, or neither

Guarantees, for every method of every part:
- Input is validated before anything is written; bad input raises BadRequest,
  NotFound or Conflict (applikant.manager.errors) and changes nothing.
- A change and its audit entry are committed in one transaction, durably
  (WAL, synchronous=FULL): when the method returns, the change survives a crash.
  Inside `store.transaction`, that holds for the whole block.
- `on_change(event)` is called after the commit, once per event, in commit order;
  events are small JSON-friendly dicts with a `kind` (`key.added`, `repo.renamed`...).
- The audit log is append-only: no method changes or removes an entry, and the
  schema refuses it.
- Mutating methods take the keyword-only `actor` (`user-42`, or SYSTEM) and
  `node` (where the request came from) for the audit log. The store records the
  actor but does not refuse changes by actor: the service layer authorises
  callers (applikant.manager.runtime). The actor only decides what error
  messages reveal (the owner of a duplicate key is named to admins only).

The store is thread-safe for one caller at a time (an internal lock); every
method is quick except the ones that hash a password, which do the hashing
outside the lock. SQL is standard with `?` placeholders; what a database does
its own way is the backend's (backend.py; SQLite in sqlite.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from applikant.manager.passwords import Passwords
from applikant.manager.store.access import Access
from applikant.manager.store.audit import Audit
from applikant.manager.store.backend import Backend
from applikant.manager.store.branches import Branches
from applikant.manager.store.builds import Builds
from applikant.manager.store.core import SYSTEM, Core, Event, Tx
from applikant.manager.store.groups import Groups
from applikant.manager.store.keys import Keys
from applikant.manager.store.repos import Repos
from applikant.manager.store.sessions import Sessions
from applikant.manager.store.tokens import Tokens
from applikant.manager.store.users import Users
from applikant.manager.store.webhooks import Webhooks

__all__ = ["SYSTEM", "Event", "Store"]


class Store:
    """All of am's state: one core (connection, lock, transactions) and its
    parts; see the module docstring for the guarantees."""

    def __init__(
        self,
        path: str,
        *,
        on_change: Callable[[Event], None] | None = None,
        passwords: Passwords | None = None,
        clock: Callable[[], datetime] | None = None,
        migrations: Sequence[Any] | None = None,
        read_only: bool = False,
        backend: Backend | None = None,
    ) -> None:
        self.core = Core(
            path,
            backend=backend,
            on_change=on_change,
            passwords=passwords,
            clock=clock,
            migrations=migrations,
            read_only=read_only,
        )
        self.users = Users(self.core)
        self.keys = Keys(self.core)
        self.tokens = Tokens(self.core)
        self.sessions = Sessions(self.core)
        self.groups = Groups(self.core)
        self.repos = Repos(self.core)
        self.access = Access(self.core)
        self.branches = Branches(self.core)
        self.audit = Audit(self.core)
        self.webhooks = Webhooks(self.core)
        self.builds = Builds(self.core)

    @property
    def path(self) -> str:
        return self.core.path

    @property
    def schema_version(self) -> int:
        return self.core.schema_version

    def transaction(self, actor: str, node: str | None = None) -> AbstractContextManager[Tx]:
        """One transaction for everything done inside the block, on any part:
        all of it commits at the end, or none of it (any exception). Events
        reach on_change after that commit."""
        return self.core.write(actor, node)

    def close(self) -> None:
        """Close the connection; everything committed is already on disk."""
        self.core.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
