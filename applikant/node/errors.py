"""The node layer's error vocabulary, in two tiers (see STYLE.md).

Protocol errors belong to the sans-IO core: the local side misused it, or the
remote side broke the protocol. Call errors are what a caller of a remote
service sees: each has one meaning, and none carries a traceback.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A connection can no longer be used; it must be closed."""


class LocalProtocolError(ProtocolError):
    """We asked the protocol core to do something it cannot (a bug on our side)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol (garbage, oversize, bad handshake)."""


class HandshakeRefused(RemoteProtocolError):
    """The peer refused the handshake, or we refused it; `reason` says why in words,
    `code` for programs (protocol.REFUSE_*)."""

    def __init__(self, reason: str, code: str = "refused") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class DistError(Exception):
    """Base of every error a call, cast or connection attempt can raise."""


class NoSuchName(DistError):
    """No service is registered under that name (globally, or on that node)."""


class NodeDown(DistError):
    """The node could not be reached, or went down while we waited for it."""


class CallTimeout(DistError):
    """No reply came before the caller's deadline."""


class Refused(DistError):
    """The peer refused our handshake (wrong cookie, name clash, mixed name kinds)."""


class RemoteError(DistError):
    """The remote handler failed; `kind` is machine-readable, `message` is for people."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


class ServiceError(Exception):
    """Raised by a service handler to answer with a typed error.

    The caller receives it as RemoteError(kind, message). Subclasses set `kind`.
    Any other exception in a handler is answered as kind "internal" with a generic
    message, and logged in full on the serving node only.
    """

    kind: str = "error"

    def __init__(self, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if kind is not None:
            self.kind = kind


class BadRequest(ServiceError):
    kind = "bad_request"


class NotFound(ServiceError):
    kind = "not_found"


class Conflict(ServiceError):
    kind = "conflict"


class Forbidden(ServiceError):
    kind = "forbidden"


class Unavailable(ServiceError):
    kind = "unavailable"


# Error kinds on the wire for the node layer's own failures.
KIND_NO_SUCH_NAME = "no_such_name"
KIND_NODE_DOWN = "node_down"
KIND_TIMEOUT = "timeout"
KIND_INTERNAL = "internal"


def error_from_reply(kind: str, message: str) -> DistError:
    """The caller-side exception for an error reply (both drivers use this)."""
    if kind == KIND_NO_SUCH_NAME:
        return NoSuchName(message)
    if kind == KIND_NODE_DOWN:
        return NodeDown(message)
    if kind == KIND_TIMEOUT:
        return CallTimeout(message)
    return RemoteError(kind, message)


def reply_from_error(exc: BaseException) -> tuple[str, str] | None:
    """(kind, message) to answer a caller with, or None for an unexpected exception."""
    if isinstance(exc, ServiceError):
        return exc.kind, exc.message
    if isinstance(exc, RemoteError):
        return exc.kind, exc.message
    if isinstance(exc, NoSuchName):
        return KIND_NO_SUCH_NAME, str(exc)
    if isinstance(exc, NodeDown):
        return KIND_NODE_DOWN, str(exc)
    if isinstance(exc, CallTimeout):
        return KIND_TIMEOUT, str(exc)
    return None


class NameTaken(DistError):
    """A global name is already registered by another node."""


class NodeStartError(DistError):
    """A node cannot start: no portmapper, its name taken, no free port in the range."""
