"""A trio Stream over a plain non-blocking socket that only yields when it must.

trio's SocketStream makes every send and receive a scheduling point, which is the
right default and costs a trip through the run loop each time: three per call
round trip here, the difference between ~4,700 and ~9,000 sequential calls/s.
This stream tries the system call first and waits (wait_readable/wait_writable)
only when the kernel says EAGAIN.

The deviation, on purpose: trio's rule is that every operation is a checkpoint
(a place where the task may be cancelled and others may run). Here `send_all`
and `receive_some` that the kernel completes at once raise Cancelled in a
cancelled scope, but let no other task run: a task that keeps finding data
would never yield. Two things keep that safe:
`receive_some` yields at least every FAIR_EVERY calls that did not have to wait
(a busy link cannot starve the handlers it spawns), and an operation that has to
wait is a checkpoint as usual. Every other guarantee of trio's Stream holds, and
trio's own generic checks (`trio.testing.check_two_way_stream`) pass with the
checkpoint assertion lifted (tests/node/test_faststream.py): bytes arrive whole
and in order, two tasks sending (or receiving) at once get BusyResourceError, a
closed stream raises ClosedResourceError, a peer that went away
BrokenResourceError, and an empty read means end of file.

A reader whose link is hot (messages less than a millisecond apart) polls for a
short while before it sleeps (`busy_wait`, `[dist] busy_wait_us`): see `_spin`.
"""

from __future__ import annotations

import errno
import os
import socket
from time import perf_counter

import trio

FAIR_EVERY = 16
DEFAULT_RECEIVE = 65536
# Busy waiting (see `_spin`): a link is hot when its last message came within
# HOT_S of the reader starting to wait.
HOT_S = 1e-3


class FastSocketStream(trio.abc.Stream):
    def __init__(self, sock: socket.socket, busy_wait: float = 0.0) -> None:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.socket = sock
        self._fd = sock.fileno()  # (what trio's waits take without asking the socket)
        self._closed = False
        self._sending = False
        self._receiving = False
        self._eager = 0
        self._drained = False
        self._hot = False
        self._busy_wait = busy_wait

    @classmethod
    def from_trio(cls, stream: trio.SocketStream, busy_wait: float = 0.0) -> FastSocketStream:
        """Take over the socket of a trio SocketStream (from open_tcp_stream or a
        listener); `busy_wait` seconds of spinning before a hot link's reader sleeps."""
        trio_sock = stream.socket
        sock = socket.socket(
            trio_sock.family, trio_sock.type, trio_sock.proto, fileno=trio_sock.detach()
        )
        return cls(sock, busy_wait)

    def _check_open(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")

    def _broken(self, exc: OSError) -> Exception:
        if self._closed or exc.errno == errno.EBADF:
            return trio.ClosedResourceError("the stream was closed")
        return trio.BrokenResourceError(str(exc))

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_open()
        self._sending = True
        try:
            view = memoryview(data)
            while view:
                try:
                    sent = self.socket.send(view)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(self.socket)
                    self._check_open()
                    continue
                except OSError as exc:
                    raise self._broken(exc) from exc
                view = view[sent:]
        finally:
            self._sending = False

    def try_send(self, data: bytes) -> int:
        """Send what the kernel takes now, without waiting; the number of bytes sent."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        if self._closed:  # (_check_open written out: once per message sent)
            raise trio.ClosedResourceError("the stream is closed")
        try:
            return self.socket.send(data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._broken(exc) from exc

    def try_send_parts(self, parts: list[bytes]) -> int:
        """try_send of the pieces in order, in one system call (sendmsg)."""
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_open()
        try:
            return self.socket.sendmsg(parts)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._broken(exc) from exc

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is sending on this stream")
        self._check_open()
        self._sending = True
        try:
            await trio.lowlevel.wait_writable(self.socket)
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            size = DEFAULT_RECEIVE
        elif max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        else:
            size = max_bytes
        buffer = bytearray(size)
        count = await self.receive_into(memoryview(buffer))
        del buffer[count:]
        return bytes(buffer)

    async def receive_into(self, buffer: memoryview) -> int:
        """receive_some into `buffer` (recv_into): the number of bytes written to
        its start, 0 at end of file. A driver that reuses one buffer allocates
        nothing per read. The checkpoints are as the module's docstring says;
        every path is written out here (it runs once per message received)."""
        size = len(buffer)
        if not size:
            raise ValueError("the buffer must hold at least 1 byte")
        if self._receiving:
            raise trio.BusyResourceError("another task is receiving on this stream")
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")
        self._receiving = True
        try:
            if self._drained:
                # The last read took less than it could: the buffer was empty then,
                # and most likely still is. Wait first instead of paying for an
                # EAGAIN (the wait is the checkpoint: Cancelled in a cancelled scope).
                self._eager = 0
                polled = await self._readable(buffer)
                if polled >= 0:
                    self._drained = 0 < polled < size
                    return polled
                if self._closed:
                    raise trio.ClosedResourceError("the stream was closed")
            else:
                await trio.lowlevel.checkpoint_if_cancelled()
                self._eager += 1
                if self._eager >= FAIR_EVERY:
                    self._eager = 0
                    await trio.lowlevel.checkpoint()
            try:
                count: int = self.socket.recv_into(buffer)
            except BlockingIOError:
                count = await self._receive_waiting(buffer)
            except OSError as exc:
                raise self._broken(exc) from exc
        finally:
            self._receiving = False
        self._drained = 0 < count < size
        return count

    async def _spin(self, buffer: memoryview) -> int:
        """Poll the socket for up to `busy_wait` seconds, yielding to the other
        tasks on every turn: the bytes read, or -1 if none came (the link cools).

        Why: on a virtual machine, falling asleep in epoll and being woken again
        costs more CPU than a call's whole handling (a Python ping-pong over
        loopback: ~35 µs of CPU per side sleeping, ~12 µs polling). A peer that
        answers within the window is read without either. Erlang's schedulers
        busy-wait the same way before sleeping (`+sbwt`). Bounded: only a hot
        link spins, and a window that passes empty cools it."""
        end = perf_counter() + self._busy_wait
        recv_into = self.socket.recv_into
        while True:
            await trio.lowlevel.checkpoint()
            # Offer the core to any other process on each turn: the peer being
            # waited for may be queued behind this one (without it, a loaded
            # 2-core machine served a Python ping-pong 4,200 round trips/s; with
            # it, 30,500; on an idle machine it cost nothing measurable).
            os.sched_yield()
            if self._closed:
                raise trio.ClosedResourceError("the stream was closed")
            try:
                count: int = recv_into(buffer)
                return count
            except BlockingIOError:
                if perf_counter() >= end:
                    self._hot = False
                    return -1
            except OSError as exc:
                raise self._broken(exc) from exc

    async def _readable(self, buffer: memoryview) -> int:
        """Wait until the socket has bytes: polled first if the link is hot (the
        count read then), else asleep in trio's wait (-1: read them now)."""
        if self._hot and self._busy_wait:
            polled = await self._spin(buffer)
            if polled >= 0:
                return polled
        began = perf_counter()
        await trio.lowlevel.wait_readable(self._fd)
        self._hot = perf_counter() - began < HOT_S
        return -1

    async def _receive_waiting(self, buffer: memoryview) -> int:
        while True:
            self._eager = 0
            polled = await self._readable(buffer)
            if polled >= 0:
                return polled
            self._check_open()
            try:
                count: int = self.socket.recv_into(buffer)
                return count
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._broken(exc) from exc

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()
        await trio.lowlevel.checkpoint()

    def getpeername(self) -> tuple[str, int] | str:
        """(host, port) over TCP; over a Unix socket, the peer's path (often "")."""
        peer = self.socket.getpeername()
        return peer if isinstance(peer, str) else (peer[0], peer[1])
