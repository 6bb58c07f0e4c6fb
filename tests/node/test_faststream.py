"""FastSocketStream is a correct trio Stream (trio's own generic stream checks),
except for the one rule it breaks on purpose: an operation the kernel completes
at once is not a scheduling point."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import trio
import trio.testing
from trio.testing import _check_streams

from applikant.node.faststream import FAIR_EVERY, FastSocketStream


async def stream_pair() -> tuple[FastSocketStream, FastSocketStream]:
    left, right = socket.socketpair()
    return FastSocketStream(left), FastSocketStream(right)


async def fill(stream: FastSocketStream) -> None:
    """Write until the kernel buffers are full and send_all has to wait."""

    async def sender() -> None:
        while True:
            await stream.send_all(b"x" * 10000)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


async def clogged_pair() -> tuple[FastSocketStream, FastSocketStream]:
    left, right = await stream_pair()
    await fill(left)
    await fill(right)
    return left, right


@pytest.fixture
def no_checkpoint_rule(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """trio's checks also assert that every send_all and receive_some is a
    scheduling point: the deviation this stream makes on purpose (see its
    docstring, and the test below that pins it). Everything else they check holds."""
    from contextlib import nullcontext

    monkeypatch.setattr(_check_streams, "assert_checkpoints", nullcontext)
    yield


async def test_trio_generic_stream_checks(no_checkpoint_rule: None) -> None:
    await trio.testing.check_two_way_stream(stream_pair, clogged_pair)


async def test_the_deviation_an_operation_that_need_not_wait_lets_no_task_run() -> None:
    a, b = await stream_pair()
    ran: list[str] = []

    async def other(tag: str) -> None:
        ran.append(tag)

    async with a, b, trio.open_nursery() as nursery:
        nursery.start_soon(other, "first")  # would run at the next scheduling point
        await a.send_all(b"hello")
        assert await b.receive_some(5) == b"hello"  # all there was, and wanted
        assert ran == []
        # ... but a reader that always finds data yields every FAIR_EVERY reads, so
        # that a busy link cannot starve the tasks it spawns
        await a.send_all(b"x" * (FAIR_EVERY * 8))
        reads = 0
        while not ran and reads < 2 * FAIR_EVERY:  # (after its yield, trio may
            assert await b.receive_some(1) == b"x"  # still run this task first)
            reads += 1
        assert ran == ["first"] and reads >= FAIR_EVERY // 2
        # ... and an operation that has to wait is a scheduling point, as usual
        nursery.start_soon(other, "second")
        nursery.start_soon(a.send_all, b"late")
        assert await b.receive_some() == b"x" * (FAIR_EVERY * 8 - reads)
        assert await b.receive_some() == b"late"
        assert ran == ["first", "second"]
        # ... and an operation in a cancelled scope is cancelled, even one that need
        # not wait (the other half of trio's rule holds)
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await a.send_all(b"never")
        await a.send_all(b"y")
        assert await b.receive_some() == b"y"  # "never" was not sent


async def test_the_socket_of_a_trio_stream_is_taken_over() -> None:
    with trio.socket.socket() as listener:
        await listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        client = await trio.open_tcp_stream("127.0.0.1", listener.getsockname()[1])
        server, _ = await listener.accept()
        with server:
            fast = FastSocketStream.from_trio(client)
            async with fast:
                assert client.socket.fileno() == -1  # detached: one owner only
                assert fast.getpeername() == listener.getsockname()[:2]
                assert fast.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                await fast.send_all(b"ping")
                assert await server.recv(4) == b"ping"


async def test_try_send_parts_writes_the_pieces_in_order() -> None:
    left, right = await stream_pair()
    parts = [b"head", b"x" * 100_000, b"tail"]
    sent = left.try_send_parts(parts)
    assert 0 < sent <= sum(len(p) for p in parts)
    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(left.send_all, b"".join(parts)[sent:])
        while len(got) < 100_008:
            got += await right.receive_some(65536)
    assert bytes(got) == b"".join(parts)
    await left.aclose()
    await right.aclose()


async def test_receive_into_fills_the_buffer_and_says_how_much() -> None:
    left, right = await stream_pair()
    buffer = bytearray(10)
    await left.send_all(b"hello")
    assert await right.receive_into(memoryview(buffer)) == 5
    assert buffer[:5] == b"hello"
    await left.send_all(b"x" * 30)
    assert await right.receive_into(memoryview(buffer)[2:]) == 8  # no more than it holds
    assert buffer == b"hexxxxxxxx"
    with pytest.raises(ValueError):
        await right.receive_into(memoryview(buffer)[:0])

    async def later() -> None:
        await trio.testing.wait_all_tasks_blocked()
        await left.send_all(b"late")

    async with trio.open_nursery() as nursery:  # one that has to wait for the bytes
        nursery.start_soon(later)
        assert await right.receive_into(memoryview(buffer)) == 10  # (22 x's were waiting)
        while buffer[:4] != b"late":
            assert await right.receive_into(memoryview(buffer)) > 0
    await left.aclose()
    assert await right.receive_into(memoryview(buffer)) == 0  # end of file
    await right.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await right.receive_into(memoryview(buffer))


@pytest.fixture
def counted_waits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times a reader went to sleep in wait_readable; every link is hot
    (the gap that makes one hot is a time, which a loaded machine stretches)."""
    import applikant.node.faststream as faststream

    waits: list[int] = []
    real = trio.lowlevel.wait_readable

    async def wait_readable(fd: int) -> None:
        waits.append(fd)
        await real(fd)

    monkeypatch.setattr(trio.lowlevel, "wait_readable", wait_readable)
    monkeypatch.setattr(faststream, "HOT_S", 3600.0)
    return waits


async def test_a_hot_reader_polls_before_it_sleeps(counted_waits: list[int]) -> None:
    left, right = socket.socketpair()
    a, b = FastSocketStream(left), FastSocketStream(right, busy_wait=30.0)
    buffer = memoryview(bytearray(100))

    async def send_soon(data: bytes) -> None:
        for _ in range(3):  # (a few turns of the scheduler: b is polling meanwhile)
            await trio.lowlevel.checkpoint()
        await a.send_all(data)

    async with a, b, trio.open_nursery() as nursery:
        await a.send_all(b"one")
        assert await b.receive_into(buffer) == 3  # less than it could: drained
        nursery.start_soon(send_soon, b"two")
        assert await b.receive_into(buffer) == 3 and buffer[:3] == b"two"
        assert len(counted_waits) == 1  # slept once (not hot yet), then the link was
        nursery.start_soon(send_soon, b"three")
        assert await b.receive_into(buffer) == 5 and buffer[:5] == b"three"
        assert len(counted_waits) == 1  # ... read while polling, never asleep
        await a.send_all(b"f" * 100)
        assert await b.receive_into(buffer) == 100  # a full buffer: not drained, so
        nursery.start_soon(send_soon, b"four")  # the next read tries first, finds
        assert await b.receive_into(buffer) == 4 and buffer[:4] == b"four"  # nothing,
        assert len(counted_waits) == 1  # and polls too (the end of every large frame)


async def test_a_window_that_passes_empty_sleeps_and_still_reads(counted_waits: list[int]) -> None:
    left, right = socket.socketpair()
    a, b = FastSocketStream(left), FastSocketStream(right, busy_wait=0.001)
    buffer = memoryview(bytearray(100))

    async def send_late() -> None:
        await trio.sleep(0.05)  # long after the window
        await a.send_all(b"late")

    async with a, b, trio.open_nursery() as nursery:
        await a.send_all(b"x")
        await b.receive_into(buffer)
        nursery.start_soon(send_late)
        assert await b.receive_into(buffer) == 4 and buffer[:4] == b"late"
        assert counted_waits  # it went to sleep: nothing lost, nothing spun forever


async def test_a_polling_reader_is_cancelled_and_closed_as_usual(counted_waits: list[int]) -> None:
    left, right = socket.socketpair()
    a, b = FastSocketStream(left), FastSocketStream(right, busy_wait=30.0)
    buffer = memoryview(bytearray(100))
    async with a:
        await a.send_all(b"x")
        await b.receive_into(buffer)  # drained; the next read polls for up to 30 s
        with trio.move_on_after(0.05) as scope:
            await b.receive_into(buffer)
        assert scope.cancelled_caught
        await a.send_all(b"after")
        assert await b.receive_into(buffer) == 5  # the stream still works

        async def close_soon() -> None:
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            await b.aclose()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_soon)
            with pytest.raises(trio.ClosedResourceError):
                await b.receive_into(buffer)


async def test_trio_generic_stream_checks_with_busy_waiting(no_checkpoint_rule: None) -> None:
    async def busy_pair() -> tuple[FastSocketStream, FastSocketStream]:
        left, right = socket.socketpair()
        return FastSocketStream(left, busy_wait=0.001), FastSocketStream(right, busy_wait=0.001)

    async def busy_clogged() -> tuple[FastSocketStream, FastSocketStream]:
        left, right = await busy_pair()
        await fill(left)
        await fill(right)
        return left, right

    await trio.testing.check_two_way_stream(busy_pair, busy_clogged)
