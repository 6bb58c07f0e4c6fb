"""Making links, and the rules that settle every race at once (connect.py): two nodes
dialling each other keep one link, the greater name's dial, the same on both
sides; a peer that holds a stale link (it was frozen, or the other side
restarted) takes the new one in its place. On memory streams and trio's mock
clock (seconds below are mock seconds); the same with real processes under
SIGSTOP and restarts is in test_node_processes.py."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from applikant.node.connect import Crossed
from applikant.node.monitor import NodeDownEvent, NodeUp
from applikant.node.node import Node
from harness.wait import wait_until_async

from .support import echo, memory_net

TICK = 10.0


def _one_link(a: Node, b: Node) -> str:
    """The two ends of one link: each node holds exactly one, dialled by the same
    node (whose name it returns)."""
    ours, theirs = a.links[b.name], b.links[a.name]
    assert ours.dialer == theirs.dialer, (ours.dialer, theirs.dialer)
    assert not ours.closed and not theirs.closed
    return ours.dialer


def _linked(a: Node, b: Node) -> bool:
    ours, theirs = a.links.get(b.name), b.links.get(a.name)
    return bool(
        ours and theirs and ours.dialer == theirs.dialer and not ours.closed and not theirs.closed
    )


async def _linked_within(a: Node, b: Node, seconds: float) -> float:
    """Mock seconds until a and b hold the same link again, failing past `seconds`."""
    start = trio.current_time()
    await wait_until_async(lambda: _linked(a, b), seconds, "one link", every=0.001)
    return trio.current_time() - start


@pytest.mark.parametrize("names", [("a@host", "b@host"), ("b@host", "a@host")])
@pytest.mark.parametrize("offset", [0.0, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03])
async def test_simultaneous_dials_settle_on_the_greater_names_link_at_once(
    autojump_clock: trio.testing.MockClock, names: tuple[str, str], offset: float
) -> None:
    """Two nodes dial each other, the second `offset` seconds after the first, on
    a net where every send takes 10 ms: whatever crosses where, both connects
    return one and the same link at once (no waiting out a handshake timeout),
    and it stays. Dials that cross (both hellos under way) keep the greater
    name's; a dial that arrives while the other's is being taken waits for it."""
    async with memory_net(latency=0.01) as net:
        first = await net.node(names[0], tick_time=TICK)
        second = await net.node(names[1], tick_time=TICK)
        events = {n.name: n.monitor() for n in (first, second)}
        got = {}
        start = trio.current_time()

        async def dial(node: Node, peer: str, after: float) -> None:
            await trio.sleep(after)
            got[node.name] = await node.connect(peer)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(dial, first, second.name, 0.0)
            nursery.start_soon(dial, second, first.name, offset)
        assert trio.current_time() - start < 1.0
        kept = _one_link(first, second)
        if offset < 0.01:  # the second hello left before the first arrived
            assert kept == "b@host"
        assert got[first.name] is first.links[second.name]
        assert got[second.name] is second.links[first.name]
        await trio.sleep(5 * TICK)  # and it stays: nothing flaps
        assert _one_link(first, second) == kept
        assert got[first.name] is first.links[second.name]
        for node, peer in ((first, second), (second, first)):
            seen = []
            while True:
                try:
                    seen.append(events[node.name].receive_nowait())
                except trio.WouldBlock:
                    break
            ups = [e for e in seen if isinstance(e, NodeUp)]
            assert ups and all(e.node == peer.name for e in ups)
            # a link that lost a crossing may have come and gone; never the one kept
            assert len([e for e in seen if isinstance(e, NodeDownEvent)]) == len(ups) - 1


async def test_a_frozen_peer_that_continues_is_linked_again_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """am is stopped for 3 tick times (SIGSTOP), af declares it down and dials it
    again and again meanwhile; am continues (SIGCONT) still holding its old link:
    af's dial replaces it, or am's own reconnect lands, within a second, and both
    hold the same one link. (It took 6.4 s: "a node named af@localhost is already
    connected".)"""
    async with memory_net() as net:
        # (am's heartbeat would run while its streams stand still; a stopped process's
        # does not: its tick time is long here)
        am = await net.node("am@host", tick_time=1000.0)
        af = await net.node("af@host", tick_time=TICK)
        await am.register_global("svc", {"echo": echo})
        await af.connect("am@host")
        await af.sync()
        net.freeze("am@host")
        await wait_until_async(lambda: "am@host" not in af.links, 2 * TICK, "am down")
        await trio.sleep(TICK)  # several dials time out against the frozen node
        net.thaw("am@host")
        assert await _linked_within(af, am, 1.0) < 1.0
        await af.sync()
        assert await af.call("svc", "echo", "back") == "back"
        _one_link(af, am)


async def test_a_restarted_peer_is_linked_again_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with memory_net() as net:
        am = await net.node("am@host", tick_time=TICK)
        af = await net.node("af@host", tick_time=TICK)
        await af.connect("am@host")
        net.stop("am@host")  # killed: its links end, no goodbye
        await trio.sleep(30)  # af keeps dialling meanwhile
        am = await net.node("am@host", tick_time=TICK)
        assert await _linked_within(af, am, 1.0) < 1.0


async def test_a_stale_link_is_replaced_by_the_peers_new_dial(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A partition only a noticed (its tick time is the shorter): b still holds the
    old link when a dials again. a's dial says so, and b takes the new link in
    place of the stale one (nodedown, then nodeup) at once."""
    async with memory_net() as net:
        a = await net.node("a@host", tick_time=TICK)
        b = await net.node("b@host", tick_time=1000 * TICK)
        await a.connect("b@host")
        stale = b.links["a@host"]
        events = b.monitor()
        net.sever("a@host", "b@host")
        await wait_until_async(lambda: "b@host" not in a.links, 2 * TICK, "b down")
        assert await _linked_within(a, b, 1.0) < 1.0
        assert stale.closed and b.links["a@host"] is not stale
        assert b.links["a@host"].replaces is stale
        assert isinstance(await events.receive(), NodeDownEvent)
        assert await events.receive() == NodeUp("a@host")


async def test_a_dialler_that_holds_the_link_withdraws(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The peer says it holds a link to us, and we hold it too (we took the peer's
    dial while ours was under way): ours gives way, and the link stays."""
    async with memory_net() as net:
        a = await net.node("a@host")
        b = await net.node("b@host")
        link = await b.connect("a@host")
        with pytest.raises(Crossed, match="holds a link"):
            await a._connector.dial("b@host")
        await trio.sleep(1)
        assert a.links["b@host"] is not None and b.links["a@host"] is link
        _one_link(a, b)
