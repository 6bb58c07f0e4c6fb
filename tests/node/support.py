"""What the node-layer tests share: a portmapper in the test's own trio run, nodes
that reach each other over trio's in-memory streams, and a bare remote peer.

The code under test is always the shipped code (Link, Node, Deadlines). What
stands in for the far end of a link is `FakePeer`: the sans-IO protocol core and
a stream, driven by the test, so a test can make the peer answer, stay silent or
freeze.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio
import trio.testing

from applikant.node import portmapper
from applikant.node.node import CallContext, Node
from applikant.node.protocol import (
    NEED_DATA,
    Call,
    Cancel,
    Connection,
    ConnectionClosed,
    HandshakeDone,
    PeerHello,
    Role,
    State,
    Tick,
)
from applikant.node.settings import DistSettings

COOKIE = b"cookie"


@asynccontextmanager
async def running_portmapper() -> AsyncIterator[DistSettings]:
    """A portmapper on a free loopback port, and settings that point nodes at it."""
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(portmapper.serve, cookie=COOKIE), "127.0.0.1", 0)
        yield DistSettings(
            portmapper_port=port,
            listen_min=30000 + port % 20000,
            listen_max=30099 + port % 20000,
            handshake_timeout=2.0,
        )
        nursery.cancel_scope.cancel()


async def echo(ctx: CallContext, args: object) -> object:
    return args


def handshaken(client: str, server: str, cookie: bytes = COOKIE) -> tuple[Connection, Connection]:
    """(client, server): two protocol Connections whose handshake ran in memory."""
    ours = Connection(Role.CLIENT, client, cookie)
    theirs = Connection(Role.SERVER, server, cookie)
    ours.initiate()
    while not ours.state == theirs.state == State.CONNECTED:
        theirs.receive_data(ours.data_to_send())
        while (event := theirs.next_event()) is not NEED_DATA:
            if type(event) is PeerHello:
                theirs.accept()
        ours.receive_data(theirs.data_to_send())
        while ours.next_event() is not NEED_DATA:
            pass
    return ours, theirs


Answer = Callable[[Call], Any]


def answer_echo(call: Call) -> Any:
    from applikant.node.protocol import Reply

    return Reply(call.req_id, {"method": call.method, "args": call.args})


def silent(call: Call) -> Any:
    return None


class FakePeer:
    """The far end of a link: records every event and answers calls with
    `answer(call)` (an event to send back, or None for silence). `frozen` stops it
    sending anything at all (not even ticks), as a hung process would."""

    def __init__(
        self, name: str = "peer@host", answer: Answer = answer_echo, *, ticks: bool = True
    ) -> None:
        self.name = name
        self.answer = answer
        self.ticks = ticks  # answer our ticks with its own, as a live node would
        self.frozen = False
        self.events: list[Any] = []
        self.stream: trio.abc.Stream | None = None
        self.proto: Connection | None = None
        self._changed = trio.Event()

    async def serve(self, stream: trio.abc.Stream, cookie: bytes = COOKIE) -> None:
        """Be dialled: shake hands as the server over `stream`, then run."""
        proto = Connection(Role.SERVER, self.name, cookie)
        while proto.state is not State.CONNECTED:
            event = proto.next_event()
            if type(event) is PeerHello:
                proto.accept()
            out = proto.data_to_send()
            if out:
                await stream.send_all(out)
            if event is NEED_DATA:
                proto.receive_data(await stream.receive_some(4096))
            elif type(event) is not HandshakeDone and type(event) is not PeerHello:
                raise AssertionError(f"handshake went wrong: {event}")
        await self.run(stream, proto)

    async def run(self, stream: trio.abc.Stream, proto: Connection) -> None:
        self.stream, self.proto = stream, proto
        while True:
            event = proto.next_event()
            if event is NEED_DATA:
                try:
                    data = await stream.receive_some(65536)
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    return  # our end was closed (by the test)
                proto.receive_data(data)
                continue
            self.events.append(event)
            self._changed.set()
            self._changed = trio.Event()
            if type(event) is ConnectionClosed:
                return
            if self.frozen:
                continue
            if type(event) is Call:
                reply = self.answer(event)
                if reply is not None:
                    await self.send(reply)
            elif type(event) is Tick and self.ticks:
                await self.send(Tick())

    async def send(self, event: Any) -> None:
        assert self.stream is not None and self.proto is not None
        await self.stream.send_all(self.proto.send(event))

    async def wait_for(self, predicate: Callable[[list[Any]], bool]) -> None:
        with trio.fail_after(30):
            while not predicate(self.events):
                await self._changed.wait()

    def of_type(self, kind: type) -> list[Any]:
        return [e for e in self.events if type(e) is kind]

    def calls(self) -> list[Call]:
        return self.of_type(Call)

    def cancels(self) -> list[Cancel]:
        return self.of_type(Cancel)


class GatedStream(trio.abc.Stream):
    """One node's end of a memory stream: while its node is frozen (as a process
    under SIGSTOP) nothing goes in or out; `latency` delays each send (so that
    two handshakes can cross mid-way). A severed stream (a partition) drops what
    is sent, never delivers, and its close reaches nobody."""

    def __init__(self, inner: trio.abc.Stream, net: MemoryNet, node: str, peer: str) -> None:
        self.inner, self.net, self.node, self.peer = inner, net, node, peer
        self.severed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.net.running(self.node)
        if self.net.latency:
            await trio.sleep(self.net.latency)
        if self.severed:
            return
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        await self.net.running(self.node)
        if self.severed:
            await trio.sleep_forever()
        data = await self.inner.receive_some(max_bytes)
        await self.net.running(self.node)  # what arrived while frozen waits
        if self.severed:
            await trio.sleep_forever()
        return data

    async def aclose(self) -> None:
        if not self.severed:
            await self.inner.aclose()
        await trio.lowlevel.checkpoint()


class MemoryNet:
    """Nodes and fake peers that reach each other over in-memory streams: each Node
    gets an opener that hands the other end to the node (or fake) it names. A node
    can be frozen and thawed (SIGSTOP, SIGCONT): its streams stand still and the
    connections made to it meanwhile wait in its backlog."""

    def __init__(self, nursery: trio.Nursery, latency: float = 0.0) -> None:
        self.nursery = nursery
        self.latency = latency
        self.nodes: dict[str, Node] = {}
        self.fakes: dict[str, FakePeer] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        self._thawed: dict[str, trio.Event] = {}  # frozen nodes, set when thawed
        self._streams: list[GatedStream] = []

    async def node(self, name: str, **settings: Any) -> Node:
        """A Node named `name`, running until the net ends or `stop(name)`."""
        node = Node(name, COOKIE, DistSettings(**settings), opener=partial(self.open, name))
        self.nodes[name] = node
        self._scopes[name] = scope = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[None]) -> None:
            with scope:
                await node.run(task_status=task_status)

        await self.nursery.start(run)
        return node

    def stop(self, name: str) -> None:
        """Stop a node as its process would stop: every link of it ends."""
        self._scopes[name].cancel()
        del self.nodes[name]

    def freeze(self, name: str) -> None:
        self._thawed.setdefault(name, trio.Event())

    def thaw(self, name: str) -> None:
        thawed = self._thawed.pop(name, None)
        if thawed is not None:
            thawed.set()

    async def running(self, name: str) -> None:
        """Return once `name` is not frozen."""
        while (thawed := self._thawed.get(name)) is not None:
            await thawed.wait()

    def sever(self, a: str, b: str) -> None:
        """Cut every stream between a and b without either side hearing of it."""
        for stream in self._streams:
            if {stream.node, stream.peer} == {a, b}:
                stream.severed = True

    def fake(self, peer: FakePeer) -> FakePeer:
        self.fakes[peer.name] = peer
        return peer

    async def open(self, dialler: str, peer: str) -> tuple[trio.abc.Stream, str]:
        await self.running(dialler)
        ours, theirs = trio.testing.memory_stream_pair()
        if peer in self.nodes:
            node = self.nodes[peer]

            their_end = GatedStream(theirs, self, peer, dialler)
            self._streams.append(their_end)

            async def accept() -> None:
                await self.running(peer)  # in the backlog while frozen
                await node.accept(their_end, "memory")

            node.spawn(accept)
        elif peer in self.fakes:
            self.nursery.start_soon(self.fakes[peer].serve, theirs)
        else:
            raise OSError(f"no node {peer} on this memory net")
        our_end = GatedStream(ours, self, dialler, peer)
        self._streams.append(our_end)
        return our_end, "memory"


@asynccontextmanager
async def memory_net(latency: float = 0.0) -> AsyncIterator[MemoryNet]:
    async with trio.open_nursery() as nursery:
        yield MemoryNet(nursery, latency)
        nursery.cancel_scope.cancel()
