"""The shipped Link over trio's in-memory streams: its reader and dispatch table,
replies, typed errors, timeouts with Cancel (on the node's deadline heap), node
down, batching sends. The far end is a FakePeer (the bare protocol core);
timeouts run on trio's mock clock (`autojump_clock`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from socket import socket, socketpair
from typing import Any

import pytest
import trio
import trio.testing

from applikant.node.deadlines import Deadlines
from applikant.node.errors import CallTimeout, NodeDown, NoSuchName, RemoteError
from applikant.node.faststream import FastSocketStream
from applikant.node.frameauth import TAG_BYTES
from applikant.node.link import Dispatch, Link
from applikant.node.protocol import (
    Call,
    Cancel,
    ErrorReply,
    NameClaimed,
    NameReleased,
    NamesHeld,
    Peers,
    Reply,
    State,
    SyncAck,
    SyncRequest,
    Tick,
    encode_frame,
)

from .support import Answer, FakePeer, answer_echo, handshaken, silent

US = "us@host"
PEER = "peer@host"


@asynccontextmanager
async def linked(
    answer: Answer = answer_echo, dispatch: Dispatch | None = None
) -> AsyncIterator[tuple[Link, FakePeer]]:
    ours, theirs = handshaken(US, PEER)
    our_stream, their_stream = trio.testing.memory_stream_pair()
    deadlines = Deadlines()
    link = Link(our_stream, ours, PEER, False, "memory", deadlines)
    peer = FakePeer(PEER, answer)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        nursery.start_soon(peer.run, their_stream, theirs)
        await nursery.start(link.run, dispatch or {})
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
            await peer.wait_for(lambda ev: len(peer.calls()) == 5)
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


async def test_call_times_out_at_its_deadline_and_cancels(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with linked(silent) as (link, peer):
        start = trio.current_time()
        with pytest.raises(CallTimeout, match=f"slow on {PEER} did not answer within 7"):
            await link.call(None, "svc", "slow", [], timeout=7)
        assert trio.current_time() - start == pytest.approx(7)  # a heap, not a poll
        await peer.wait_for(lambda ev: bool(peer.cancels()))
        [call] = peer.calls()
        assert peer.cancels() == [Cancel(call.req_id)]
        assert link.pending == {}
        assert not link.closed
        # A late answer is dropped; the link keeps working.
        await peer.send(Reply(call.req_id, "too late"))
        peer.answer = answer_echo
        assert await link.call(None, "svc", "fast", [1], timeout=7) == {
            "method": "fast",
            "args": [1],
        }


async def test_only_overdue_calls_fail(autojump_clock: trio.testing.MockClock) -> None:
    async with linked(silent) as (link, peer):
        outcomes: dict[str, Any] = {}
        start = trio.current_time()

        async def caller(name: str, timeout: float) -> None:
            try:
                outcomes[name] = await link.call(None, "svc", name, [], timeout=timeout)
            except CallTimeout as exc:
                outcomes[name] = (exc, trio.current_time() - start)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller, "long", 20)
            nursery.start_soon(caller, "short", 2)  # earlier than the one slept on
            await peer.wait_for(lambda ev: len(peer.calls()) == 2)
            await trio.sleep(5)
            exc, when = outcomes["short"]
            assert isinstance(exc, CallTimeout) and "short" in str(exc) and PEER in str(exc)
            assert when == pytest.approx(2)
            assert "long" not in outcomes
            [long_call] = [c for c in peer.calls() if c.method == "long"]
            await peer.send(Reply(long_call.req_id, "done"))
        assert outcomes["long"] == "done"
        [short_call] = [c for c in peer.calls() if c.method == "short"]
        assert peer.cancels() == [Cancel(short_call.req_id)]


async def test_caller_cancelled_sends_cancel(autojump_clock: trio.testing.MockClock) -> None:
    async with linked(silent) as (link, peer):
        with trio.move_on_after(3) as scope:
            await link.call(None, "svc", "slow", [], timeout=60)
        assert scope.cancelled_caught
        await peer.wait_for(lambda ev: bool(peer.cancels()))
        assert peer.cancels() == [Cancel(peer.calls()[0].req_id)]
        assert link.pending == {}


async def test_reply_racing_the_timeout_is_not_cancelled(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """An answer that arrives in time wins; no Cancel follows it."""

    async def answer_late(peer: FakePeer) -> None:
        await peer.wait_for(lambda ev: bool(peer.calls()))
        await trio.sleep(4.9)
        await peer.send(Reply(peer.calls()[0].req_id, "just in time"))

    async with linked(silent) as (link, peer):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_late, peer)
            assert await link.call(None, "svc", "m", [], timeout=5) == "just in time"
        await trio.sleep(1)
        assert peer.cancels() == []


# ---- the link going down ------------------------------------------------------------


async def test_close_fails_pending_calls_and_stops_what_runs_for_the_peer() -> None:
    stopped = trio.Event()

    async def handler_for_the_peer() -> None:
        try:
            await trio.sleep_forever()
        finally:
            stopped.set()

    async with linked(silent) as (link, peer):
        link.spawn(handler_for_the_peer)
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
        with trio.fail_after(5):
            await stopped.wait()
        assert len(failures) == 2
        assert all("x" in str(exc) and PEER in str(exc) for exc in failures)
        assert link.closed and link.down_reason == "x"
        assert link.pending == {}
        link.close("y")  # a second close changes nothing
        assert link.down_reason == "x"
        with pytest.raises(NodeDown, match="x"):  # a new call fails at once, sends nothing
            await link.call(None, "svc", "m", [], timeout=5)
        with pytest.raises(NodeDown):
            await link.send_event(Tick())
        await peer.wait_for(lambda ev: peer.stream is not None)
        assert len(peer.calls()) == 2
        assert peer.cancels() == []  # a dead link is not told to cancel


async def test_nothing_is_spawned_for_a_closed_link() -> None:
    """A heartbeat may tick a link after it closed and its nursery ended: that
    must not take the node down ("Nursery is closed to new arrivals")."""
    ran: list[str] = []

    async def tick() -> None:
        ran.append("tick")

    async with linked(silent) as (link, _peer):
        link.close("gone")
        await trio.testing.wait_all_tasks_blocked()
    link.spawn(tick)  # the link's nursery is over by now
    await trio.testing.wait_all_tasks_blocked()
    assert ran == []


async def test_peer_closing_its_end_fails_pending_calls() -> None:
    async with linked(silent) as (link, peer):
        async with trio.open_nursery() as nursery:

            async def closer() -> None:
                await peer.wait_for(lambda ev: bool(peer.calls()))
                assert peer.stream is not None
                await peer.stream.aclose()

            nursery.start_soon(closer)
            with pytest.raises(NodeDown, match="connection closed"):
                await link.call(None, "svc", "m", [], timeout=1000)
        assert link.closed


async def test_garbage_from_the_peer_ends_the_link() -> None:
    async with linked(silent) as (link, peer):
        assert peer.stream is not None and peer.proto is not None
        await peer.stream.send_all(peer.proto._frame([1, 2]))  # authentic, but no message
        await trio.testing.wait_all_tasks_blocked()
        assert link.closed
        assert link.down_reason.startswith("protocol error")


async def test_an_injected_frame_ends_the_link_unanswered(caplog: pytest.LogCaptureFixture) -> None:
    """A frame written into the stream by someone without the link's keys (the
    relay of the security review) is never served: the link ends, logged with
    the peer's address."""
    served: list[Call] = []

    def serve(link: Link, call: Call) -> None:
        served.append(call)

    async with linked(silent, {Call: serve}) as (link, peer):
        assert peer.stream is not None
        injected = encode_frame([1, 4242, None, "am_user_db", "list_users", {"actor": "system"}])
        await peer.stream.send_all(injected + bytes(TAG_BYTES))
        await trio.testing.wait_all_tasks_blocked()
        assert link.closed
        assert "authentication" in link.down_reason
    assert served == []
    [record] = [r for r in caplog.records if r.getMessage() == "protocol_error"]
    assert record.fields["address"] == "memory"  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["ours_closed", "theirs_gone"])
async def test_write_on_a_broken_stream_is_node_down(how: str) -> None:
    ours, _theirs = handshaken(US, PEER)
    our_stream, their_stream = trio.testing.memory_stream_pair()
    link = Link(our_stream, ours, PEER, False, "memory", Deadlines())
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


async def test_a_send_while_the_protocol_is_closing_is_node_down() -> None:
    """The peer said goodbye (or broke the protocol) and the reader has not yet
    ended the link: a send then is NodeDown, like a send on a closed link (a
    broadcast skips that peer), never a local protocol error."""
    ours, _theirs = handshaken(US, PEER)
    our_stream, _their_stream = trio.testing.memory_stream_pair()
    link = Link(our_stream, ours, PEER, False, "memory", Deadlines())
    ours.state = State.CLOSED
    with pytest.raises(NodeDown, match="its link is closing"):
        await link.send_event(Tick())
    # A call (which frames without an event object) says the same, and leaves
    # nothing waiting behind it.
    with pytest.raises(NodeDown, match="its link is closing"):
        await link.call(None, "echo", "echo", 1, 5.0)
    assert link.pending == {}
    link.close("test")
    with pytest.raises(NodeDown, match=r"is down \(test\)"):
        await link.call(None, "echo", "echo", 1, 5.0)
    assert link.pending == {}


async def test_concurrent_sends_are_batched_and_whole() -> None:
    """Frames queued while a write is blocked go out whole, in order."""
    async with linked(silent) as (link, peer):
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(link.send_event, Cancel(i))
        await peer.wait_for(lambda ev: len(peer.cancels()) == 20)
        assert sorted(c.req_id for c in peer.cancels()) == list(range(20))


class CountingStream(FastSocketStream):
    """A socket stream that notes the size of each write that does not wait."""

    def __init__(self, sock: socket) -> None:
        super().__init__(sock)
        self.writes: list[int] = []

    def try_send(self, data: bytes) -> int:
        self.writes.append(len(data))
        return super().try_send(data)

    def try_send_parts(self, parts: list[bytes]) -> int:
        self.writes.append(sum(len(part) for part in parts))
        return super().try_send_parts(parts)


async def test_answers_to_one_read_go_out_in_one_write() -> None:
    """Calls that arrive together are answered with one write: the reader holds
    what it sends until it has handled what one read brought, and lets it go
    before it waits (a handler that waits sends in order after the held ones)."""
    ours, theirs = handshaken(US, PEER)
    a, b = socketpair()
    stream = CountingStream(a)
    writes = stream.writes
    link = Link(stream, ours, PEER, False, "socketpair", Deadlines())
    peer = FakePeer(PEER, silent, ticks=False)
    their_stream = FastSocketStream(b)
    large = b"x" * 20000  # (its answer is sent in pieces: held as pieces, in order)
    await their_stream.send_all(
        b"".join(theirs.send(Call(i, None, "s", "m", large if i == 2 else i)) for i in (1, 2, 3))
    )

    async def then_tick(link: Link) -> None:
        await trio.lowlevel.checkpoint()
        await link.send_event(Tick())

    def answer(link: Link, call: Call) -> Any:
        link.send_soon(link.proto.send(Reply(call.req_id, call.args)))
        return then_tick(link) if call.req_id == 4 else None

    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.run, their_stream, theirs)
        await nursery.start(link.run, {Call: answer})
        await peer.wait_for(lambda ev: len(ev) == 3)
        assert len(writes) == 1  # three answers, one write
        assert peer.events[1] == Reply(2, large)
        await peer.send(Call(4, None, "s", "m", 4))
        await peer.send(Call(5, None, "s", "m", 5))
        await peer.wait_for(lambda ev: len(ev) == 6)
        assert not link.closed  # every frame passed the peer's authentication: in order
        nursery.cancel_scope.cancel()
    await their_stream.aclose()
    assert [(type(e).__name__, getattr(e, "req_id", None)) for e in peer.events] == [
        ("Reply", 1),
        ("Reply", 2),
        ("Reply", 3),
        ("Reply", 4),
        ("Tick", None),
        ("Reply", 5),
    ]


async def test_callers_answered_by_one_read_call_again_in_one_write() -> None:
    """Callers whose replies came in one read call again in the next pass of the
    scheduler: what they send is held until all have, and goes out in one write."""
    ours, theirs = handshaken(US, PEER)
    a, b = socketpair()
    stream = CountingStream(a)
    link = Link(stream, ours, PEER, False, "socketpair", Deadlines())
    peer = FakePeer(PEER, silent, ticks=False)
    their_stream = FastSocketStream(b)

    async def caller(n: int) -> None:
        for _ in range(2):
            await link.call(None, "s", "m", n, timeout=None)

    async def answer(calls: list[Call]) -> None:
        await their_stream.send_all(b"".join(theirs.send(Reply(c.req_id, c.args)) for c in calls))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.run, their_stream, theirs)
        await nursery.start(link.run, {})
        async with trio.open_nursery() as callers:
            for n in range(3):
                callers.start_soon(caller, n)
            await peer.wait_for(lambda ev: len(ev) == 3)
            before = len(stream.writes)
            await answer(peer.calls())
            await peer.wait_for(lambda ev: len(ev) == 6)
            assert len(stream.writes) == before + 1  # three calls again, one write
            await answer(peer.calls()[3:])
        assert link.pending == {} and not link.closed
        nursery.cancel_scope.cancel()
    await their_stream.aclose()


# ---- dispatch -----------------------------------------------------------------------


async def test_events_go_to_their_handlers_in_order() -> None:
    """Handlers given by the node get the link and the event; an awaitable one is
    awaited before the next event is read (registry messages apply in order)."""
    seen: list[Any] = []

    async def slow_claim(link: Link, event: NameClaimed) -> None:
        await trio.sleep(0.01)
        seen.append(("claim", link.peer, event.name))

    done = trio.Event()

    def released(link: Link, event: NameReleased) -> None:
        seen.append(("release", link.peer, event.name))
        done.set()

    async with linked(silent, {NameClaimed: slow_claim, NameReleased: released}) as (link, peer):
        await peer.send(NameClaimed("x", 1.0))
        await peer.send(NameReleased("x"))
        await peer.send(Peers(["z@host"]))  # no handler: ignored
        await peer.send(Tick())
        with trio.fail_after(5):
            await done.wait()
        assert seen == [("claim", PEER, "x"), ("release", PEER, "x")]
        assert not link.closed


async def test_a_cancel_from_the_peer_cancels_the_handler() -> None:
    async with linked(silent) as (link, peer):
        cancelled = trio.Event()

        async def handler() -> None:
            with trio.CancelScope() as scope:
                link.handlers[7] = scope
                await trio.sleep_forever()
            cancelled.set()

        link.spawn(handler)
        await trio.testing.wait_all_tasks_blocked()
        await peer.send(Cancel(7))
        with trio.fail_after(5):
            await cancelled.wait()
        await peer.send(Cancel(99))  # unknown ids are ignored
        await peer.send(Tick())
        await trio.testing.wait_all_tasks_blocked()
        assert not link.closed


async def test_the_greeting_goes_out_before_any_answer() -> None:
    """What the node says first on a new link (its peers, its names) is never
    overtaken by an answer to what the peer sent meanwhile: a peer's sync must
    find the names already told."""
    ours, theirs = handshaken(US, PEER)
    our_stream, their_stream = trio.testing.memory_stream_pair()
    link = Link(our_stream, ours, PEER, False, "memory", Deadlines())
    peer = FakePeer(PEER, silent)
    await their_stream.send_all(theirs.send(SyncRequest(1)))  # there before we read

    async def ack(link: Link, event: SyncRequest) -> None:
        await link.send_event(SyncAck(event.token))

    greeting = [Peers(["x@host"]), NamesHeld([("svc", 1.0)])]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.run, their_stream, theirs)
        await nursery.start(link.run, {SyncRequest: ack}, (), greeting)
        await peer.wait_for(lambda ev: bool(peer.of_type(SyncAck)))
        nursery.cancel_scope.cancel()
    assert peer.events == [*greeting, SyncAck(1)]


async def test_nothing_is_framed_once_the_peer_has_closed() -> None:
    """A tick (or an answer) due just after the peer closed the link is dropped with
    NodeDown: the protocol object has ended and must not be asked for a frame (it
    took af down once: LocalProtocolError out of the heartbeat)."""
    async with linked(silent) as (link, peer):
        assert peer.stream is not None
        await peer.stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert link.closed
        with pytest.raises(NodeDown):
            await link.send_event(Tick())
