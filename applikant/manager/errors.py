"""The manager's error vocabulary: the service errors of the node layer, re-exported.

Store methods raise these so that the service wrapper can pass them to the caller
unchanged (each becomes RemoteError(kind, message) on the calling node). Messages
say what happened and, where it helps, what to do; they never carry a traceback.

- BadRequest ("bad_request"): the input is malformed (a bad name, a garbage key).
- NotFound ("not_found"): the user, key, group or repository does not exist.
- Conflict ("conflict"): the input is fine but clashes with what is stored
  (a duplicate login, a key registered to another account).
- Forbidden ("forbidden"): the actor may not do this.
- Unavailable ("unavailable"): am cannot serve this now (its database is out of
  reach, or it lost its lease to a standby): the caller treats it as an am
  that is away (a post-receive is spooled, a pre-receive refused) and tries
  again, perhaps on the am that took over.

SchemaTooNew is not a service error: it stops am at startup.
"""

from __future__ import annotations

from applikant.node.errors import BadRequest, Conflict, Forbidden, NotFound, ServiceError

__all__ = [
    "BadRequest",
    "Conflict",
    "Forbidden",
    "NotFound",
    "SchemaTooNew",
    "ServiceError",
    "Unavailable",
]


class SchemaTooNew(RuntimeError):
    """The database was written by a newer am than this one; we refuse to touch it."""


class Unavailable(ServiceError):
    kind = "unavailable"
