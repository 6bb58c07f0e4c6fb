"""One established node link, driven by trio: its reader, a batching send, pending calls.

The link owns one reader task, which feeds the sans-IO connection and hands each
event to a handler looked up by its type (trio-websocket's shape): replies, error
replies and cancels are the link's own business; calls, casts, registry and mesh
messages go to handlers the node gives it. Everything that runs for the peer (the
reader, the handlers of its calls, its cast queue) lives in the link's nursery and
is cancelled when the link closes.

Sending is one locked path: frames queued while a write is in progress go out
together in the next write, which is how many concurrent callers share one socket
cheaply. A broken stream becomes NodeDown, and every pending call fails with it.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NoReturn

import trio

from ..logs import EventLog
from .deadlines import Deadlines
from .errors import CallTimeout, NodeDown, ProtocolError, error_from_reply
from .protocol import (
    NEED_DATA,
    Cancel,
    Cast,
    Connection,
    ConnectionClosed,
    ErrorReply,
    Event,
    Reply,
    State,
    Tick,
)

log = EventLog("dist")

# One read takes a 64 KB message with its framing whole (65536 was a few bytes
# short of it: a second read and a copy to join the two), and stays well under
# glibc's mmap threshold (128 KB), so the buffer comes from the heap.
RECV_SIZE = 65536 + 4096
MAX_PIECES = 64  # frames written with one sendmsg (the kernel takes up to IOV_MAX, 1024)

# A handler gets the link and the event; it may return an awaitable, which the
# reader awaits before it reads on (so that registry messages apply in order).
EventHandler = Callable[["Link", Any], Awaitable[None] | None]
Dispatch = Mapping[type[Event], EventHandler]
Background = Callable[["Link"], Awaitable[None]]


class Pending:
    """A call waiting for its reply: settled by the reader (reply), by the link's
    failure (NodeDown) or by the node's deadline heap (CallTimeout). The caller
    parks itself (in Link.call: `task`, `abort`) and settling wakes it: what a
    trio.Event does, without its parking lot (one caller per call)."""

    __slots__ = ("error", "settled", "task", "value", "what")

    def __init__(self, what: tuple[str, str, str, float | None]) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.value: Any = None
        self.error: BaseException | None = None
        self.settled = False
        self.what = what  # (peer, target, method, timeout): words only if it times out

    def settle(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error, self.settled = value, error, True
        task = self.task
        if task is not None:
            self.task = None
            trio.lowlevel.reschedule(task)

    def abort(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        """The caller parked for this call (Link.call) was cancelled."""
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED

    def expire(self) -> None:
        peer, target, method, timeout = self.what
        self.settle(
            error=CallTimeout(f"{target}.{method} on {peer} did not answer within {timeout} s")
        )


class Link:
    def __init__(
        self,
        stream: trio.abc.Stream,
        proto: Connection,
        peer: str,
        hidden: bool,
        address: str,
        deadlines: Deadlines,
        *,
        dialer: str = "",
        replaces: object | None = None,
    ) -> None:
        """`dialer`: the node that dialled this link; `replaces`: the link the dialler
        asked this one to replace (connect.py's rules)."""
        self.stream = stream
        self.proto = proto
        self.peer = peer
        self.hidden = hidden
        self.address = address
        self.dialer = dialer
        self.replaces = replaces
        self.finished = trio.Event()  # set by whoever ran the link, once it is all gone
        self.pending: dict[int, Pending] = {}
        self.handlers: dict[int, trio.CancelScope] = {}  # calls served for the peer
        self._now = trio.lowlevel.current_clock().current_time  # (trio.current_time, less deep)
        self.last_recv = self._now()
        self.closed = False
        self.down_reason = "connection closed"
        # Casts wait here for the link's cast task, which runs them in order.
        self.casts, self.cast_inbox = trio.open_memory_channel[Cast](math.inf)
        self._deadlines = deadlines
        self._nursery: trio.Nursery | None = None
        self._table: Mapping[type[Event], EventHandler] = {}
        self._reader: object = None  # which _read loop reads now (see read_elsewhere)
        self.reader_scope = trio.CancelScope()  # the reading task's (see _read)
        self._out: list[bytes] = []
        self._writing = False
        # What the stream can do, looked up once (FastSocketStream, FastTLSStream):
        self._try_send: Callable[[bytes], int] | None = getattr(stream, "try_send", None)
        self._try_send_parts: Callable[[list[bytes]], int] | None = getattr(
            stream, "try_send_parts", None
        )
        self._has_backlog = hasattr(stream, "backlog")
        self._woken = 0  # callers the reader's current read answered
        self._next_id = 0

    # ---- running ----------------------------------------------------------

    async def run(
        self,
        dispatch: Dispatch,
        background: Sequence[Background] = (),
        greeting: Sequence[Event] = (),
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Read and dispatch until the link ends, then cancel what ran for it and
        close the stream. `background` tasks start beside the reader; `greeting`
        goes out before the first byte is read, so that nothing the link answers
        overtakes it; then `task_status.started()`. Events of types neither in
        `dispatch` nor in the link's own table are ignored."""
        table: dict[type[Event], EventHandler] = {**_LINK_EVENTS, **dispatch}
        self._table = table
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.closed:  # closed before it ran (a heartbeat, a node stopping)
                    nursery.cancel_scope.cancel()
                for task in background:
                    nursery.start_soon(task, self)
                try:
                    for event in greeting:
                        await self.send_event(event)
                except NodeDown:
                    pass  # closed: the reader ends at once
                task_status.started()
                self._reader = token = object()
                await self._read(table, token)  # (the nursery then waits for the link's end)
        finally:
            self.close(self.down_reason)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _read(self, table: Mapping[type[Event], EventHandler], token: object) -> None:
        """Read and dispatch until the link ends, or until this task is needed for
        something else (read_elsewhere) and another task reads on. The scope is
        the handle that cancels the call this task may come to serve."""
        with trio.CancelScope() as self.reader_scope:
            await self._read_loop(table, token)

    async def _read_loop(self, table: Mapping[type[Event], EventHandler], token: object) -> None:
        proto, stream, now = self.proto, self.stream, self._now
        decoder = proto.decoder
        receive_into: Callable[[memoryview], Awaitable[int]] | None = getattr(
            stream, "receive_into", None
        )
        corked = False  # what is sent while handling one read's messages goes out together
        try:
            while True:
                event = proto.next_event()
                if event is NEED_DATA:
                    if corked:
                        if self._woken > 1:
                            # Callers answered by this read call again in the next
                            # pass of trio's scheduler: hold what they send until
                            # all have (two passes: trio may run this task first).
                            await trio.lowlevel.cancel_shielded_checkpoint()
                            await trio.lowlevel.cancel_shielded_checkpoint()
                        corked = False
                        if self._out:
                            self._uncork()
                        else:  # (nothing held: a caller's reader, most often)
                            self._writing = False
                    self._woken = 0
                    if receive_into is not None:  # (into the protocol's own buffer)
                        decoder.filled(await receive_into(decoder.room(RECV_SIZE)))
                    else:
                        wanted = decoder.wanted()
                        proto.receive_data(await stream.receive_some(max(wanted, RECV_SIZE)))
                    self.last_recv = now()
                    # Hold the frames sent from now on (the answers to the calls this
                    # read brought, in this task, which does not wait meanwhile): they
                    # go out with one write in `_uncork`, not one each. Holding is what
                    # a write in progress does already (`_writing`: every sender queues
                    # in `_out`, in order), so nothing overtakes a held frame. Not if a
                    # write is in progress: that writer sends what is queued.
                    if not self._writing:
                        self._writing = corked = True
                    continue
                if type(event) is ConnectionClosed:
                    self.close("connection closed")
                    return
                handler = table.get(type(event))  # type: ignore[arg-type]
                if handler is not None:
                    result = handler(self, event)
                    if result is not None:
                        if corked:  # (nothing stays held while this task waits)
                            corked = False
                            self._uncork()
                        await result
                        if self._reader is not token:
                            return  # a new task reads this link now
        except ProtocolError as exc:
            log.warning("protocol_error", peer=self.peer, address=self.address, reason=str(exc))
            self.close(f"protocol error: {exc}")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.close(f"connection lost: {exc or type(exc).__name__}")
        finally:
            if corked:
                self._uncork()

    def _uncork(self) -> None:
        out = self._out
        self._writing = False
        if out:
            self._out = []
            try:  # (one sendmsg of the frames if they are not too many pieces; send_soon)
                if self._queue(out if len(out) <= MAX_PIECES else b"".join(out)):
                    self.spawn(self._flush_quietly)
            except NodeDown:
                pass  # the link is closing: nobody waits for these

    def read_elsewhere(self) -> None:
        """The task reading this link has something else to do (a call it serves
        that waits): a new task reads on from where it is, and the current loop
        stops after its handler returns."""
        self._reader = token = object()
        self.spawn(self._read, self._table, token)

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run `fn(*args)` for the peer: cancelled when the link closes. On a
        link that has closed, nothing runs (its nursery may be gone already:
        a heartbeat can come between the close and the link leaving the node's
        table)."""
        assert self._nursery is not None, "the link is not running"
        if self.closed:
            return
        self._nursery.start_soon(fn, *args)

    # ---- the link's own events ----------------------------------------------

    def _on_reply(self, event: Reply) -> None:
        pending = self.pending.pop(event.req_id, None)
        if pending is not None and not pending.settled:  # else the caller gave up
            # (pending.settle(event.value) written out: once per call)
            pending.value, pending.settled = event.value, True
            task = pending.task
            if task is not None:
                pending.task = None
                trio.lowlevel.reschedule(task)
            self._woken += 1

    def _on_error_reply(self, event: ErrorReply) -> None:
        pending = self.pending.pop(event.req_id, None)
        if pending is not None and not pending.settled:
            pending.settle(error=error_from_reply(event.kind, event.message))
            self._woken += 1

    def _on_cancel(self, event: Cancel) -> None:
        scope = self.handlers.get(event.req_id)
        if scope is not None:
            scope.cancel()

    def _on_cast(self, event: Cast) -> None:
        self.casts.send_nowait(event)

    def _on_tick(self, event: Tick) -> None:
        """Nothing to do: any bytes received (last_recv) prove the peer alive."""

    # ---- sending ----------------------------------------------------------

    async def send_event(self, event: Event) -> None:
        """Send one message; NodeDown once the link (or its protocol) is closing:
        the peer said goodbye or broke the protocol, and the reader is ending it
        (the protocol object must not be asked to frame anything then)."""
        if self._queue(self._frame(event)):
            await self._flush()

    def _frame(self, event: Event) -> list[bytes]:
        if self.closed or self.proto.state is not State.CONNECTED:
            self._refuse_send()
        return self.proto.send_parts(event)

    def _refuse_send(self) -> NoReturn:
        """NodeDown: the link is closed, or its protocol is closing."""
        if self.closed:
            raise NodeDown(f"{self.peer} is down ({self.down_reason})")
        raise NodeDown(f"{self.peer} is down (its link is closing)")

    async def send_bytes(self, data: bytes | list[bytes]) -> None:
        """Queue data; write it now unless another task is writing (it will take ours).

        The write is shielded: a half-written frame would corrupt the link for
        everyone. A peer that stops reading is cut off by the heartbeat, which
        closes the stream and so ends a blocked write.
        """
        if self._queue(data):
            await self._flush()

    def send_soon(self, data: bytes | list[bytes]) -> None:
        """Send data without waiting: what the kernel does not take now goes out
        from a task of the link's (a reader never blocks on a write)."""
        if self._queue(data):
            self.spawn(self._flush_quietly)

    def _queue(self, data: bytes | list[bytes]) -> bool:
        """Send what the kernel takes at once, or queue it; True if a flush must
        follow (this caller then writes, `_writing` is set). `data` may come in
        pieces (protocol.send_parts), written with one sendmsg when they can be."""
        if self.closed:
            raise NodeDown(f"{self.peer} is down ({self.down_reason})")
        if type(data) is list:
            if len(data) == 1:
                data = data[0]
            elif self._writing:  # (the pieces stay pieces: the writer joins or sendmsg's them)
                self._out.extend(data)
                return False
            elif self._try_send_parts is not None:
                return self._queue_parts(self._try_send_parts, data)
            else:
                data = b"".join(data)
        assert type(data) is bytes
        if self._writing:
            self._out.append(data)
            return False
        try_send = self._try_send
        if try_send is not None:  # the common case: the kernel takes it all at once
            try:
                sent = try_send(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.close(f"write failed: {exc or type(exc).__name__}")
                raise NodeDown(f"{self.peer} is down ({self.down_reason})") from exc
            if sent == len(data):
                if not self._has_backlog or not getattr(self.stream, "backlog", b""):
                    return False
                data = b""  # (TLS: the records the kernel did not take wait in the stream)
            else:
                data = memoryview(data)[sent:].tobytes()
        self._out.append(data)
        self._writing = True
        return True

    def _queue_parts(self, send_parts: Callable[[list[bytes]], int], parts: list[bytes]) -> bool:
        try:
            sent = send_parts(parts)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close(f"write failed: {exc or type(exc).__name__}")
            raise NodeDown(f"{self.peer} is down ({self.down_reason})") from exc
        if sent == sum(map(len, parts)):  # (no generator: once per large frame)
            return False
        self._out.append(b"".join(parts)[sent:])  # (the kernel was full: the slow path)
        self._writing = True
        return True

    async def _flush(self) -> None:
        """Write out the queue; only the task that set `_writing` runs this."""
        try:
            with trio.CancelScope(shield=True):
                while self._out:
                    chunk = self._out[0] if len(self._out) == 1 else b"".join(self._out)
                    self._out.clear()
                    await self.stream.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.close(f"write failed: {exc or type(exc).__name__}")
            raise NodeDown(f"{self.peer} is down ({self.down_reason})") from exc
        finally:
            self._writing = False

    async def _flush_quietly(self) -> None:
        try:
            await self._flush()
        except NodeDown:
            pass  # the link is closed: nobody waits for this write

    def writing(self) -> bool:
        return self._writing

    # ---- calls ------------------------------------------------------------

    async def call(
        self, node: str | None, target: str, method: str, args: Any, timeout: float | None
    ) -> Any:
        """Send a call and wait for its reply; raises NodeDown, CallTimeout or the
        error the peer answered with. A caller that times out or is cancelled
        sends Cancel, so that the handler stops too."""
        self._next_id += 1
        req_id = self._next_id
        pending = Pending((self.peer, target, method, timeout))
        self.pending[req_id] = pending
        if timeout is not None:
            self._deadlines.add(self._now() + timeout, pending)
        try:
            # (send_event written out, without the Call event: fewer frames per call)
            if self.closed or self.proto.state is not State.CONNECTED:
                self._refuse_send()
            if self._queue(self.proto.send_call(req_id, node, target, method, args)):
                await self._flush()
            if pending.settled:  # (a checkpoint either way, cancellable like Event.wait)
                await trio.lowlevel.checkpoint()
            else:
                pending.task = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(pending.abort)
        finally:
            pending.settled = True  # (off the deadline heap, if it was not yet)
            if self.pending.pop(req_id, None) is not None and not self.closed:
                await self._send_cancel(req_id)  # timed out or cancelled: unanswered
        if pending.error is not None:
            raise pending.error
        return pending.value

    async def _send_cancel(self, req_id: int) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await self.send_event(Cancel(req_id))
            except NodeDown:
                pass

    # ---- closing ----------------------------------------------------------

    def close(self, reason: str) -> None:
        """Mark the link down: fail pending calls, stop the reader and the handlers."""
        if self.closed:
            return
        self.closed = True
        self.down_reason = reason
        for pending in self.pending.values():
            pending.settle(error=NodeDown(f"{self.peer} went down ({reason})"))
        self.pending.clear()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()


_LINK_EVENTS: dict[type[Event], EventHandler] = {
    Reply: Link._on_reply,
    ErrorReply: Link._on_error_reply,
    Cancel: Link._on_cancel,
    Cast: Link._on_cast,
    Tick: Link._on_tick,
}
