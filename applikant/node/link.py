"""One established node link, driven by trio: a locked, batching send and pending calls.

The reader task lives in node.py; this holds what the reader and the callers
share. Frames queued while a write is in progress go out together in the next
write, which is how many concurrent callers share one socket cheaply.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from .errors import CallTimeout, NodeDown, error_from_reply
from .protocol import Call, Cancel, Connection, Event


class Pending:
    """A call waiting for its reply; filled in by the reader, by link failure, or
    by the node's sweeper when its deadline passes (a cancel scope per call would
    cost a quarter of a call's CPU time)."""

    __slots__ = ("done", "value", "error", "deadline", "what")

    def __init__(self, deadline: float, what: str) -> None:
        self.done = trio.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.deadline = deadline
        self.what = what


class Link:
    def __init__(
        self, stream: trio.abc.Stream, proto: Connection, peer: str, hidden: bool, address: str
    ) -> None:
        self.stream = stream
        self.proto = proto
        self.peer = peer
        self.hidden = hidden
        self.address = address
        self.pending: dict[int, Pending] = {}
        self.handlers: dict[int, trio.CancelScope] = {}
        self.last_recv = trio.current_time()
        self.closed = False
        self.down_reason = "connection closed"
        self.scope: trio.CancelScope | None = None  # the reader's and handlers' scope
        # Casts wait here for the link's cast task, which runs them in order.
        self.casts, self.cast_inbox = trio.open_memory_channel[Any](math.inf)
        self._out: list[bytes] = []
        self._writing = False
        self._next_id = 0

    # ---- sending ----------------------------------------------------------

    async def send_event(self, event: Event) -> None:
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
        self, node: str | None, target: str, method: str, args: Any, timeout: float
    ) -> Any:
        """Send a call and wait for its reply; a caller that gives up sends Cancel."""
        self._next_id += 1
        req_id = self._next_id
        deadline = trio.current_time() + (timeout if timeout is not None else math.inf)
        pending = Pending(
            deadline, f"{target}.{method} on {self.peer} did not answer within {timeout} s"
        )
        self.pending[req_id] = pending
        try:
            await self.send_event(Call(req_id, node, target, method, args))
            await pending.done.wait()
        finally:
            if self.pending.pop(req_id, None) is not None and not self.closed:
                # We were cancelled while waiting: tell the handler.
                await self._send_cancel(req_id)
        if pending.error is not None:
            raise pending.error
        return pending.value

    async def _send_cancel(self, req_id: int) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(1):
            try:
                await self.send_event(Cancel(req_id))
            except NodeDown:
                pass

    def expired(self, now: float) -> list[int]:
        """Fail the calls whose deadline has passed; return their ids (to cancel)."""
        gone = [req_id for req_id, p in self.pending.items() if p.deadline <= now]
        for req_id in gone:
            pending = self.pending.pop(req_id)
            pending.error = CallTimeout(pending.what)
            pending.done.set()
        return gone

    def resolve(
        self, req_id: int, value: Any = None, kind: str | None = None, message: str = ""
    ) -> None:
        pending = self.pending.pop(req_id, None)
        if pending is None:
            return  # the caller gave up already
        if kind is not None:
            pending.error = error_from_reply(kind, message)
        else:
            pending.value = value
        pending.done.set()

    # ---- closing ----------------------------------------------------------

    def close(self, reason: str) -> None:
        """Mark the link down: fail pending calls, stop the reader and the handlers."""
        if self.closed:
            return
        self.closed = True
        self.down_reason = reason
        for pending in self.pending.values():
            pending.error = NodeDown(f"{self.peer} went down ({reason})")
            pending.done.set()
        self.pending.clear()
        if self.scope is not None:
            self.scope.cancel()
