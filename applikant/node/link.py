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
from typing import Any

import trio

from ..logs import EventLog
from .deadlines import Deadlines
from .errors import CallTimeout, NodeDown, ProtocolError, error_from_reply
from .protocol import (
    NEED_DATA,
    Call,
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

RECV_SIZE = 65536

# A handler gets the link and the event; it may return an awaitable, which the
# reader awaits before it reads on (so that registry messages apply in order).
EventHandler = Callable[["Link", Any], Awaitable[None] | None]
Dispatch = Mapping[type[Event], EventHandler]
Background = Callable[["Link"], Awaitable[None]]


class Pending:
    """A call waiting for its reply: settled by the reader (reply), by the link's
    failure (NodeDown) or by the node's deadline heap (CallTimeout)."""

    __slots__ = ("done", "error", "settled", "value", "what")

    def __init__(self, what: tuple[str, str, str, float | None]) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.settled = False
        self.what = what  # (peer, target, method, timeout): words only if it times out

    def settle(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error, self.settled = value, error, True
        self.done.set()

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
    ) -> None:
        self.stream = stream
        self.proto = proto
        self.peer = peer
        self.hidden = hidden
        self.address = address
        self.pending: dict[int, Pending] = {}
        self.handlers: dict[int, trio.CancelScope] = {}  # calls served for the peer
        self.last_recv = trio.current_time()
        self.closed = False
        self.down_reason = "connection closed"
        # Casts wait here for the link's cast task, which runs them in order.
        self.casts, self.cast_inbox = trio.open_memory_channel[Cast](math.inf)
        self._deadlines = deadlines
        self._nursery: trio.Nursery | None = None
        self._out: list[bytes] = []
        self._writing = False
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
                await self._read(table)
        finally:
            self.close(self.down_reason)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    async def _read(self, table: Mapping[type[Event], EventHandler]) -> None:
        proto, stream = self.proto, self.stream
        try:
            while True:
                event = proto.next_event()
                if event is NEED_DATA:
                    data = await stream.receive_some(max(RECV_SIZE, proto.bytes_wanted()))
                    self.last_recv = trio.current_time()
                    proto.receive_data(data)
                    continue
                if type(event) is ConnectionClosed:
                    self.close("connection closed")
                    return
                handler = table.get(type(event))  # type: ignore[arg-type]
                if handler is not None:
                    result = handler(self, event)
                    if result is not None:
                        await result
        except ProtocolError as exc:
            log.warning("protocol_error", peer=self.peer, address=self.address, reason=str(exc))
            self.close(f"protocol error: {exc}")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.close(f"connection lost: {exc or type(exc).__name__}")

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
            pending.settle(event.value)

    def _on_error_reply(self, event: ErrorReply) -> None:
        pending = self.pending.pop(event.req_id, None)
        if pending is not None and not pending.settled:
            pending.settle(error=error_from_reply(event.kind, event.message))

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
        the peer said goodbye or broke the protocol, and the reader is ending it."""
        if self.closed:
            raise NodeDown(f"{self.peer} is down ({self.down_reason})")
        if self.proto.state is not State.CONNECTED:
            raise NodeDown(f"{self.peer} is down (its link is closing)")
        await self.send_bytes(self.proto.send(event))

    async def send_bytes(self, data: bytes) -> None:
        """Queue data; write it now unless another task is writing (it will take ours).

        The write is shielded: a half-written frame would corrupt the link for
        everyone. A peer that stops reading is cut off by the heartbeat, which
        closes the stream and so ends a blocked write.
        """
        if self.closed:
            raise NodeDown(f"{self.peer} is down ({self.down_reason})")
        if self._writing:
            self._out.append(data)
            return
        try_send = getattr(self.stream, "try_send", None)
        if try_send is not None:  # the common case: the kernel takes it all at once
            try:
                sent = try_send(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                self.close(f"write failed: {exc or type(exc).__name__}")
                raise NodeDown(f"{self.peer} is down ({self.down_reason})") from exc
            if sent == len(data):
                return
            data = memoryview(data)[sent:].tobytes()
        self._out.append(data)
        self._writing = True
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
            self._deadlines.add(trio.current_time() + timeout, pending)
        try:
            await self.send_event(Call(req_id, node, target, method, args))
            await pending.done.wait()
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
