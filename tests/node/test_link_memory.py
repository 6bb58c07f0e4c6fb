"""A Link over trio's in-memory streams: replies, timeouts with Cancel, node down.

Each side has a protocol Connection that did its handshake in memory; a fake peer
task answers (or does not); our side's reader resolves the pending calls and a
sweeper expires overdue ones and sends Cancel, as node.py's loops do. Timeouts run
on trio's mock clock (`autojump_clock`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

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
from applikant.node.link import Link, Pending
from applikant.node.protocol import (
    NEED_DATA,
    Call,
    Cancel,
    Connection,
    ConnectionClosed,
    ErrorReply,
    HandshakeDone,
    PeerHello,
    Reply,
    Role,
    State,
    Tick,
)

COOKIE = b"link-test-cookie"
US = "us@host"
PEER = "peer@host"


def handshake_in_memory() -> tuple[Connection, Connection]:
    """(ours, theirs): a client and a server Connection, both CONNECTED."""
    ours = Connection(Role.CLIENT, US, COOKIE)
    theirs = Connection(Role.SERVER, PEER, COOKIE)
    ours.initiate()
    seen: list[Any] = []
    for _ in range(4):
        theirs.receive_data(ours.data_to_send())
        while (event := theirs.next_event()) is not NEED_DATA:
            seen.append(event)
            if type(event) is PeerHello:
                theirs.accept()
            if type(event) is HandshakeDone:
                break
        ours.receive_data(theirs.data_to_send())
        while (event := ours.next_event()) is not NEED_DATA:
            seen.append(event)
            if type(event) is HandshakeDone:
                break
        if ours.state == theirs.state == State.CONNECTED:
            break
    assert seen == [PeerHello(US, False), HandshakeDone(US, False), HandshakeDone(PEER, False)]
    return ours, theirs


Answer = Callable[[Call], Any]


class FakePeer:
    """The other end: records every event and answers calls with `answer(call)`
    (an event to send back, or None for silence)."""

    def __init__(self, stream: trio.abc.Stream, proto: Connection, answer: Answer) -> None:
        self.stream = stream
        self.proto = proto
        self.answer = answer
        self.events: list[Any] = []
        self.changed = trio.Event()

    async def run(self) -> None:
        while True:
            event = self.proto.next_event()
            if event is NEED_DATA:
                try:
                    data = await self.stream.receive_some(65536)
                except trio.ClosedResourceError:
                    return  # we closed our end ourselves
                self.proto.receive_data(data)
                continue
            self.events.append(event)
            self.changed.set()
            self.changed = trio.Event()
            if type(event) is ConnectionClosed:
                return
            if type(event) is Call:
                reply = self.answer(event)
                if reply is not None:
                    await self.send(reply)

    async def send(self, event: Any) -> None:
        await self.stream.send_all(self.proto.send(event))

    async def wait_for(self, predicate: Callable[[list[Any]], bool]) -> None:
        with trio.fail_after(5):
            while not predicate(self.events):
                await self.changed.wait()

    def calls(self) -> list[Call]:
        return [e for e in self.events if type(e) is Call]

    def cancels(self) -> list[Cancel]:
        return [e for e in self.events if type(e) is Cancel]


async def read_loop(link: Link) -> None:
    """Our side's reader, as in node.py: replies resolve pending calls."""
    proto = link.proto
    while True:
        event = proto.next_event()
        if event is NEED_DATA:
            try:
                data = await link.stream.receive_some(65536)
            except trio.ClosedResourceError:
                link.close("closed locally")
                return
            proto.receive_data(data)
            continue
        if type(event) is Reply:
            link.resolve(event.req_id, event.value)
        elif type(event) is ErrorReply:
            link.resolve(event.req_id, kind=event.kind, message=event.message)
        elif type(event) is ConnectionClosed:
            link.close("connection closed")
            return


SWEEP_EVERY = 0.05


async def sweep_loop(link: Link) -> None:
    """As node.py's sweeper: fail overdue calls with CallTimeout and tell the peer."""
    while True:
        await trio.sleep(SWEEP_EVERY)
        for req_id in link.expired(trio.current_time()):
            with trio.CancelScope(shield=True):
                try:
                    await link.send_event(Cancel(req_id))
                except NodeDown:
                    pass


def echo(call: Call) -> Any:
    return Reply(call.req_id, {"method": call.method, "args": call.args})


def silent(call: Call) -> Any:
    return None


@asynccontextmanager
async def linked(answer: Answer = echo) -> AsyncIterator[tuple[Link, FakePeer]]:
    ours, theirs = handshake_in_memory()
    our_stream, their_stream = trio.testing.memory_stream_pair()
    link = Link(our_stream, ours, PEER, False, "memory")
    peer = FakePeer(their_stream, theirs, answer)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_loop, link)
        nursery.start_soon(sweep_loop, link)
        nursery.start_soon(peer.run)
        yield link, peer
        nursery.cancel_scope.cancel()


# ---- calls ----------------------------------------------------------------------


async def test_call_gets_its_reply() -> None:
    async with linked() as (link, peer):
        value = await link.call(None, "repos", "list", ["alice", 3], timeout=5)
        assert value == {"method": "list", "args": ["alice", 3]}
        assert peer.calls() == [Call(1, None, "repos", "list", ["alice", 3])]
        value = await link.call("am@host", "users", "get", {"id": 7}, timeout=5)
        assert value == {"method": "get", "args": {"id": 7}}
        assert peer.calls()[1] == Call(2, "am@host", "users", "get", {"id": 7})
        assert link.pending == {}
        assert peer.cancels() == []  # an answered call sends no Cancel


async def test_call_without_timeout() -> None:
    async with linked() as (link, _peer):
        assert await link.call(None, "s", "m", None, timeout=None) == {"method": "m", "args": None}


async def test_concurrent_calls_answered_out_of_order() -> None:
    async with linked(silent) as (link, peer):
        results: dict[int, Any] = {}

        async def caller(i: int) -> None:
            results[i] = await link.call(None, "svc", f"m{i}", [i], timeout=5)

        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(caller, i)
            await peer.wait_for(lambda ev: len([e for e in ev if type(e) is Call]) == 5)
            assert len(link.pending) == 5
            for call in reversed(peer.calls()):
                await peer.send(Reply(call.req_id, call.method))
        assert results == {i: f"m{i}" for i in range(5)}
        assert len({c.req_id for c in peer.calls()}) == 5  # ids are unique
        assert link.pending == {}


@pytest.mark.parametrize(
    ("kind", "exc_type"),
    [
        ("no_such_name", NoSuchName),
        ("node_down", NodeDown),
        ("timeout", CallTimeout),
        ("not_found", RemoteError),
        ("internal", RemoteError),
    ],
)
async def test_error_reply_raises_a_typed_error(kind: str, exc_type: type) -> None:
    async with linked(lambda call: ErrorReply(call.req_id, kind, "it went wrong")) as (link, _):
        with pytest.raises(exc_type, match="it went wrong") as info:
            await link.call(None, "svc", "m", [], timeout=5)
        if exc_type is RemoteError:
            assert info.value.kind == kind
            assert info.value.message == "it went wrong"
        assert link.pending == {}
        assert not link.closed  # an error reply is an answer, not a failure of the link


async def test_call_times_out_and_cancels(autojump_clock: trio.testing.MockClock) -> None:
    async with linked(silent) as (link, peer):
        start = trio.current_time()
        with pytest.raises(CallTimeout, match="did not answer within 7"):
            await link.call(None, "svc", "slow", [], timeout=7)
        assert 7 <= trio.current_time() - start <= 7 + 2 * SWEEP_EVERY
        await peer.wait_for(lambda ev: any(type(e) is Cancel for e in ev))
        [call] = peer.calls()
        assert peer.cancels() == [Cancel(call.req_id)]
        assert link.pending == {}
        assert not link.closed
        # A late answer is dropped; the link keeps working.
        await peer.send(Reply(call.req_id, "too late"))
        peer.answer = echo
        assert await link.call(None, "svc", "fast", [1], timeout=7) == {
            "method": "fast",
            "args": [1],
        }


async def test_expired_fails_only_overdue_calls(autojump_clock: trio.testing.MockClock) -> None:
    async with linked(silent) as (link, peer):
        outcomes: dict[str, Any] = {}

        async def caller(name: str, timeout: float) -> None:
            try:
                outcomes[name] = await link.call(None, "svc", name, [], timeout=timeout)
            except CallTimeout as exc:
                outcomes[name] = exc

        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller, "short", 2)
            nursery.start_soon(caller, "long", 20)
            await peer.wait_for(lambda ev: len(peer.calls()) == 2)
            await trio.sleep(5)
            assert isinstance(outcomes.get("short"), CallTimeout)
            assert "short" in str(outcomes["short"]) and PEER in str(outcomes["short"])
            assert "long" not in outcomes
            [long_call] = [c for c in peer.calls() if c.method == "long"]
            await peer.send(Reply(long_call.req_id, "done"))
        assert outcomes["long"] == "done"
        [short_call] = [c for c in peer.calls() if c.method == "short"]
        assert peer.cancels() == [Cancel(short_call.req_id)]


def test_expired_returns_overdue_ids_and_fails_them() -> None:
    async def main() -> None:
        ours, _ = handshake_in_memory()
        a, _b = trio.testing.memory_stream_pair()
        link = Link(a, ours, PEER, False, "memory")
        link.pending = {1: Pending(5.0, "one"), 2: Pending(10.0, "two"), 3: Pending(5.0, "three")}
        assert link.expired(4.9) == []
        assert sorted(link.expired(5.0)) == [1, 3]
        assert list(link.pending) == [2]
        assert link.expired(5.0) == []

    trio.run(main)


async def test_caller_cancelled_sends_cancel(autojump_clock: trio.testing.MockClock) -> None:
    async with linked(silent) as (link, peer):
        with trio.move_on_after(3) as scope:
            await link.call(None, "svc", "slow", [], timeout=60)
        assert scope.cancelled_caught
        await peer.wait_for(lambda ev: any(type(e) is Cancel for e in ev))
        assert peer.cancels() == [Cancel(peer.calls()[0].req_id)]
        assert link.pending == {}


async def test_reply_racing_the_timeout_is_not_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An answer that arrives in time wins; no Cancel follows it."""

    async def answer_late(link: Link, peer: FakePeer) -> None:
        await peer.wait_for(lambda ev: bool(peer.calls()))
        await trio.sleep(4.9)
        await peer.send(Reply(peer.calls()[0].req_id, "just in time"))

    async with linked(silent) as (link, peer):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_late, link, peer)
            assert await link.call(None, "svc", "m", [], timeout=5) == "just in time"
        await trio.sleep(1)
        assert peer.cancels() == []


async def test_close_fails_pending_calls_with_node_down() -> None:
    async with linked(silent) as (link, peer):
        failures: list[BaseException] = []

        async def caller() -> None:
            try:
                await link.call(None, "svc", "m", [], timeout=1000)
            except NodeDown as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            nursery.start_soon(caller)
            await peer.wait_for(lambda ev: len(peer.calls()) == 2)
            link.close("x")
        assert len(failures) == 2
        assert all("x" in str(exc) and PEER in str(exc) for exc in failures)
        assert link.closed and link.down_reason == "x"
        assert link.pending == {}
        link.close("y")  # a second close changes nothing
        assert link.down_reason == "x"
        # a new call fails at once and sends nothing
        with pytest.raises(NodeDown, match="x"):
            await link.call(None, "svc", "m", [], timeout=5)
        with pytest.raises(NodeDown):
            await link.send_event(Tick())
        await trio.testing.wait_all_tasks_blocked()
        assert len(peer.calls()) == 2
        assert peer.cancels() == []  # a dead link is not told to cancel


async def test_close_cancels_the_scope() -> None:
    async with linked() as (link, _peer):
        with trio.CancelScope() as scope:
            link.scope = scope
            link.close("stop")
            await trio.sleep_forever()
        assert scope.cancelled_caught


async def test_peer_closing_its_end_fails_pending_calls() -> None:
    async with linked(silent) as (link, peer):
        async with trio.open_nursery() as nursery:

            async def closer() -> None:
                await peer.wait_for(lambda ev: bool(peer.calls()))
                await peer.stream.aclose()

            nursery.start_soon(closer)
            with pytest.raises(NodeDown, match="connection closed"):
                await link.call(None, "svc", "m", [], timeout=1000)
        assert link.closed


@pytest.mark.parametrize("how", ["ours_closed", "theirs_gone"])
async def test_write_on_a_broken_stream_is_node_down(how: str) -> None:
    ours, _theirs = handshake_in_memory()
    our_stream, their_stream = trio.testing.memory_stream_pair()
    link = Link(our_stream, ours, PEER, False, "memory")
    if how == "ours_closed":
        await our_stream.aclose()
    else:
        await their_stream.receive_stream.aclose()
    with pytest.raises(NodeDown, match=PEER):
        await link.send_event(Tick())
    assert link.closed
    assert "write failed" in link.down_reason
    assert not link.writing()
    with pytest.raises(NodeDown):
        await link.send_event(Tick())


async def test_concurrent_sends_are_batched_and_whole() -> None:
    """Frames queued while a write is blocked go out whole, in order."""
    async with linked(silent) as (link, peer):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(link.send_event, Cancel(i))
        await peer.wait_for(lambda ev: len(peer.cancels()) == 20)
        assert sorted(c.req_id for c in peer.cancels()) == list(range(20))


# ---- the call-site error vocabulary ------------------------------------------------


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
