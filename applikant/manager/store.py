"""`Store`: the manager's single source of truth, over one SQLite file.

    store = Store("var/am.sqlite3", on_change=print)
    alice = store.add_user("alice", actor=SYSTEM)
    store.add_key(alice.id, open("id_ed25519.pub").read(), actor=SYSTEM)
    store.create_repo("alice/project", actor=alice.id)
    store.check_access(alice.id, "alice/project", "write").allowed  # True

Guarantees, for every method:
- Input is validated before anything is written; bad input raises BadRequest,
  NotFound or Conflict (applikant.manager.errors) and changes nothing.
- A change and its audit entry are committed in one transaction, durably
  (WAL, synchronous=FULL): when the method returns, the change survives a crash.
- `on_change(event)` is called after the commit, once per event, in commit order;
  events are small JSON-friendly dicts with a `kind` (`key.added`, `repo.renamed`...).
- Mutating methods take the keyword-only `actor` (`user-42`, or SYSTEM) and
  `node` (where the request came from) for the audit log. The store records the
  actor but does not refuse changes by actor: the service layer authorises
  callers (is_site_admin, check_access). The actor only decides what error
  messages reveal (the owner of a duplicate key is named to admins only).

The store is thread-safe for one caller at a time (an internal lock); every
method is quick except the ones that hash a password, which do the hashing
outside the lock.
"""

from __future__ import annotations

from applikant.manager.audit import AuditMixin
from applikant.manager.base import SYSTEM, Event
from applikant.manager.branches import BranchesMixin
from applikant.manager.builds import BuildsMixin
from applikant.manager.groups import GroupsMixin
from applikant.manager.keys import KeysMixin
from applikant.manager.repos import ReposMixin
from applikant.manager.tokens import TokensMixin
from applikant.manager.users import UsersMixin
from applikant.manager.webhooks_store import WebhooksMixin

__all__ = ["SYSTEM", "Event", "Store"]


class Store(
    UsersMixin,
    KeysMixin,
    TokensMixin,
    GroupsMixin,
    ReposMixin,
    BranchesMixin,
    AuditMixin,
    WebhooksMixin,
    BuildsMixin,
):
    """All of am's state; see the module docstring for the guarantees."""

    def __enter__(self) -> Store:
        return self
