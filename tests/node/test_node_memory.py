"""The shipped Node over in-memory streams, on trio's mock clock: heartbeats, a
frozen peer declared down after its tick time, call timeouts and the handler's
cancel, retire's grace, reconnects, and a node at rest that wakes only for ticks.

Nodes dial each other through an opener that hands out memory streams
(support.MemoryNet) instead of the portmapper and TCP: everything above the
stream is the code the daemons run. The real-socket tests are test_node.py.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from applikant.node.errors import CallTimeout, NodeDown
from applikant.node.node import CallContext, NodeDownEvent, NodeUp
from applikant.node.protocol import Call, Cancel, Tick

from .support import FakePeer, echo, memory_net, silent
from .test_deadlines import StepCounter

TICK = 10.0


async def test_two_nodes_call_and_share_names(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_net() as net:
        a = await net.node("a@host")
        b = await net.node("b@host")
        events = a.monitor()
        await b.register_global("svc", {"echo": echo})
        await b.connect("a@host")
        assert await events.receive() == NodeUp("b@host")
        await a.sync()
        assert a.global_names() == {"svc": "b@host"}
        assert await a.call("svc", "echo", [1, 2]) == [1, 2]
        assert await b.call("node", "ping", node="a@host") == "pong"
        assert a.nodes() == ["b@host"] and b.nodes() == ["a@host"]


async def test_heartbeats_keep_an_idle_link_up(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_net() as net:
        a = await net.node("a@host", tick_time=TICK)
        peer = net.fake(FakePeer("p@host"))
        await a.connect("p@host")
        events = a.monitor()
        start = len(peer.of_type(Tick))
        await trio.sleep(100 * TICK)
        ticks = len(peer.of_type(Tick)) - start
        assert 4 * 100 - 2 <= ticks <= 4 * 100 + 1  # one every tick_time / 4
        assert a.nodes() == ["p@host"]
        with pytest.raises(trio.WouldBlock):
            events.receive_nowait()  # no nodedown in between


async def test_a_frozen_peer_is_down_within_its_tick_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_net() as net:
        a = await net.node("a@host", tick_time=TICK)
        peer = net.fake(FakePeer("p@host"))
        await a.connect("p@host")
        events = a.monitor()
        await trio.sleep(3 * TICK)  # alive: it answers ticks
        assert a.nodes() == ["p@host"]
        peer.frozen = True
        frozen_at = trio.current_time()
        down = await events.receive()
        silent_for = trio.current_time() - frozen_at
        assert down == NodeDownEvent("p@host", f"no heartbeat for {TICK:g} s")
        # its last bytes came at most a tick interval before it froze
        assert TICK - TICK / 4 < silent_for <= TICK + TICK / 4
        assert a.nodes() == []


async def test_a_call_times_out_at_its_deadline_and_cancels(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_net() as net:
        a = await net.node("a@host")
        peer = net.fake(FakePeer("p@host", silent))
        await a.connect("p@host")
        start = trio.current_time()
        with pytest.raises(CallTimeout, match="did not answer within 7"):
            await a.call("svc", "slow", node="p@host", timeout=7)
        assert trio.current_time() - start == pytest.approx(7)
        await peer.wait_for(lambda ev: bool(peer.cancels()))
        [call] = peer.calls()
        assert call == Call(call.req_id, "p@host", "svc", "slow", None)
        assert peer.cancels() == [Cancel(call.req_id)]
        assert a.counters["calls_made"] == 1


async def test_a_timed_out_call_cancels_the_remote_handler(
    autojump_clock: trio.testing.MockClock,
) -> None:
    cancelled = trio.Event()

    async def slow(ctx: CallContext, args: object) -> None:
        try:
            await trio.sleep(3600)
        finally:
            cancelled.set()

    async with memory_net() as net:
        a = await net.node("a@host")
        b = await net.node("b@host")
        b.register_local("slow", {"slow": slow})
        with pytest.raises(CallTimeout):
            await a.call("slow", "slow", node="b@host", timeout=2)
        with trio.fail_after(1):
            await cancelled.wait()
        assert b.services.busy == 0


async def test_retire_lets_running_calls_finish_within_its_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def work(ctx: CallContext, seconds: float) -> str:
        await trio.sleep(seconds)
        return "done"

    async with memory_net() as net:
        a = await net.node("a@host")
        b = await net.node("b@host")
        b.register_local("w", {"work": work})
        results: list[object] = []

        async def call(seconds: float) -> None:
            try:
                results.append(await a.call("w", "work", seconds, node="b@host", timeout=100))
            except NodeDown as exc:
                results.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, 3.0)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            await b.retire(grace=10)  # returns when the call is done: not at 10 s
            assert trio.current_time() - start == pytest.approx(3)
        assert results == ["done"]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, 60.0)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
            await b.retire(grace=10)  # gives up waiting at its grace
            assert trio.current_time() - start == pytest.approx(10)
            nursery.cancel_scope.cancel()


async def test_a_lost_peer_is_dialled_again(autojump_clock: trio.testing.MockClock) -> None:
    async with memory_net() as net:
        a = await net.node("a@host")
        b = await net.node("b@host")
        await b.register_global("svc", {"echo": echo})
        await a.connect("b@host")
        await a.sync()
        events = a.monitor()
        a.links["b@host"].close("simulated partition")  # no goodbye
        assert isinstance(await events.receive(), NodeDownEvent)
        assert await events.receive() == NodeUp("b@host")
        await a.sync()
        assert a.global_names() == {"svc": "b@host"}
        await b.retire(0)  # a clean stop says goodbye: not dialled again
        net.stop("b@host")
        assert await events.receive() == NodeDownEvent("b@host", "connection closed")
        await trio.sleep(60)
        assert a.nodes() == []
        assert "b@host" not in a._connector.dialing


async def test_a_node_at_rest_wakes_only_for_ticks(autojump_clock: trio.testing.MockClock) -> None:
    """Two linked nodes, nothing to do: each node's heartbeat wakes four times per
    tick time and sends a tick, which the other's link reader takes; nothing else
    runs (the 20 ms call sweeper this replaced woke 125 times per tick interval)."""
    async with memory_net() as net:
        a = await net.node("a@host", tick_time=TICK)
        b = await net.node("b@host", tick_time=TICK)
        await a.register_global("svc", {"echo": echo})
        await b.connect("a@host")
        await b.sync()
        assert await b.call("svc", "echo", 1) == 1  # a call made: its deadline is gone
        await trio.sleep(2 * TICK)  # settle
        steps = StepCounter()
        trio.lowlevel.add_instrument(steps)
        try:
            await trio.sleep(100 * TICK)
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert a.nodes() == ["b@host"]
    ran = {name.rsplit(".", 2)[-1] if "applikant" in name else "test" for name in steps.tasks}
    # the heartbeat, the tick it sends, the peer's link (its reader), the test itself
    assert ran <= {"heartbeats", "_tick", "accept", "_serve_link", "test"}
    intervals = 2 * 100 * 4  # two nodes, four per tick time
    assert steps.by_name("heartbeats") == pytest.approx(intervals, abs=2)
    # a memory stream takes a few scheduling points per frame; nothing more
    assert steps.count <= 8 * intervals


@pytest.mark.parametrize("attempt", range(20))
async def test_sync_right_after_connect_knows_the_peers_names(attempt: int) -> None:
    """A new link's greeting (its peers, its names) goes out before anything the
    link answers, so a SyncAck never overtakes it (trio runs tasks in random order:
    hence the attempts)."""
    async with memory_net() as net:
        a = await net.node("a@host")
        b = await net.node("b@host")
        await b.register_global("svc", {"echo": echo})
        await a.connect("b@host")
        await a.sync()
        assert a.global_names() == {"svc": "b@host"}


async def test_a_waiting_handler_hands_the_reading_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Calls that do not wait are answered in the link's reader; one that waits
    goes on in that task while a new one reads: the link keeps answering, the
    waiting call can still be cancelled by its caller, and ends with its answer."""
    release = trio.Event()
    cancelled = trio.Event()

    async def wait_for_it(ctx: CallContext, args: object) -> str:
        try:
            await release.wait()
        except trio.Cancelled:
            cancelled.set()
            raise
        return "released"

    async with memory_net() as net:
        a = await net.node("a@host")
        b = await net.node("b@host")
        await b.register_global("svc", {"echo": echo, "wait": wait_for_it})
        await a.connect("b@host")
        await a.sync()
        with pytest.raises(CallTimeout):
            await a.call("svc", "wait", timeout=1)
        await cancelled.wait()  # the caller's Cancel reached the waiting handler
        async with trio.open_nursery() as nursery:
            results: list[object] = []

            async def waiting() -> None:
                results.append(await a.call("svc", "wait", timeout=100))

            nursery.start_soon(waiting)
            for i in range(5):  # answered while the other call waits
                assert await a.call("svc", "echo", i) == i
            assert results == []
            release.set()
        assert results == ["released"]
        assert await a.call("svc", "echo", "still") == "still"
        assert b.services.busy == 0
