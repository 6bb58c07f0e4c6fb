"""The node layer's error vocabulary: the two tiers, and the round trip of a
call-site error through an error reply (both drivers use it)."""

from __future__ import annotations

import pytest
import trio

from applikant.node import errors
from applikant.node.errors import (
    BadRequest,
    CallTimeout,
    Conflict,
    DistError,
    Forbidden,
    NodeDown,
    NoSuchName,
    NotFound,
    RemoteError,
    ServiceError,
    Unavailable,
    error_from_reply,
    reply_from_error,
)


@pytest.mark.parametrize(
    ("exc", "kind", "back"),
    [
        (NoSuchName("nobody is called repos"), errors.KIND_NO_SUCH_NAME, NoSuchName),
        (NodeDown("am@host went down"), errors.KIND_NODE_DOWN, NodeDown),
        (CallTimeout("no answer in 5 s"), errors.KIND_TIMEOUT, CallTimeout),
        (RemoteError("conflict", "already exists"), "conflict", RemoteError),
        (ServiceError("generic"), "error", RemoteError),
        (ServiceError("custom", kind="quota"), "quota", RemoteError),
        (BadRequest("bad"), "bad_request", RemoteError),
        (NotFound("missing"), "not_found", RemoteError),
        (Conflict("taken"), "conflict", RemoteError),
        (Forbidden("no"), "forbidden", RemoteError),
        (Unavailable("later"), "unavailable", RemoteError),
    ],
)
def test_error_round_trip(exc: BaseException, kind: str, back: type) -> None:
    reply = reply_from_error(exc)
    assert reply is not None
    assert reply[0] == kind
    again = error_from_reply(*reply)
    assert type(again) is back
    assert isinstance(again, DistError)
    message = getattr(exc, "message", str(exc))
    if back is RemoteError:
        assert again.kind == kind and again.message == message
        assert str(again) == f"{kind}: {message}"
    else:
        assert str(again) == str(exc)
    # and the round trip is stable
    assert reply_from_error(again) == reply


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("boom"),
        KeyError("k"),
        RuntimeError(),
        trio.Cancelled.__new__(trio.Cancelled),
        DistError("x"),
    ],
)
def test_unexpected_exceptions_have_no_reply(exc: BaseException) -> None:
    assert reply_from_error(exc) is None


def test_service_error_kinds_are_fixed_per_class() -> None:
    assert BadRequest("m").kind == "bad_request"
    assert ServiceError("m").kind == "error"
    assert ServiceError("m", kind="k").kind == "k"
    assert ServiceError.kind == "error"  # a per-instance kind does not leak to the class


def test_error_tiers() -> None:
    assert issubclass(errors.HandshakeRefused, errors.RemoteProtocolError)
    refused = errors.HandshakeRefused("wrong cookie", "cookie")
    assert refused.reason == "wrong cookie" and refused.code == "cookie"
    assert str(refused) == "wrong cookie"
    for cls in (
        NoSuchName,
        NodeDown,
        CallTimeout,
        RemoteError,
        errors.Refused,
        errors.NameTaken,
        errors.NodeStartError,
    ):
        assert issubclass(cls, DistError)
        assert not issubclass(cls, errors.ProtocolError)
