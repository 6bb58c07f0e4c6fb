"""Hypercorn's trio connection, with one send per response and no task per request.

Hypercorn writes a response's head and its body in two `send()` calls, so a
client on loopback is woken twice and the kernel runs its TCP path twice; and it
restarts its keep-alive timer as a new task around every request. `Connection`
changes both, and nothing else:

- A small write when nothing is held is held back until the same task writes
  again (the body after the head: both leave in one `send`, or in two back to
  back for a body over `JOIN_MAX`, which is not copied), or until that task
  yields, whatever it then waits for: a task that parks is followed by the
  connection's flusher task, which sends what is held. So a streaming response's
  head (archives, raw downloads, git over HTTP), a `100 Continue` or the first
  event of a long poll still leaves as soon as its task waits; nothing is held
  past the task step that wrote it, and bytes keep their order (one lock).
- The keep-alive timer is one task per connection whose deadline a request
  moves (Hypercorn's "idle" / "busy" updates), with the same meaning: a
  connection idle for `keep_alive_timeout`, or a server shutting down, is closed.

`install()` makes Hypercorn's trio worker use it for every connection. It relies
on `TCPServer`'s `protocol_send`, `_read_data`, `_close` and `idle_task` (written
against Hypercorn 0.18; tests/web/test_hyperconn.py checks each promise above).
"""

from __future__ import annotations

from math import inf
from typing import Any

import hypercorn.trio.run as hypercorn_run
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.trio.tcp_server import TCPServer

__all__ = ["Connection", "install"]

HOLD_MAX = 16 * 1024  # a response head, or a small first chunk; larger writes go at once
JOIN_MAX = 256 * 1024  # a larger body follows its held head in a send of its own (no copy)
_SEND_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError)


class _IdleTimer:
    """Hypercorn's `SingleTask` for the keep-alive timer, as one task with a deadline.

    `restart` (the connection is idle) sets the deadline `seconds` from now and
    starts the task if it is not running; `stop` (a request is in progress)
    removes the deadline. When the deadline passes, or the server is
    terminating, the task runs `action` (Hypercorn's `_idle_timeout`, which
    closes the connection) and ends. `end_if_stopped` (the reader has ended)
    ends a task with no deadline, as Hypercorn's `stop` did by cancelling it:
    the connection's task group must not wait for it.
    """

    def __init__(self, seconds: float, terminated: Any) -> None:
        self.seconds = seconds
        self.terminated = terminated
        self.scope = trio.CancelScope()
        self.running = False

    async def restart(self, task_group: Any, action: Any) -> None:
        self.scope.deadline = trio.current_time() + self.seconds
        if not self.running:
            self.running = True
            task_group.spawn(self._run, action)

    async def stop(self) -> None:
        self.scope.deadline = inf

    def end_if_stopped(self) -> None:
        if self.scope.deadline == inf:
            self.scope.cancel()

    async def _run(self, action: Any) -> None:
        while not self.terminated.is_set():
            with self.scope:
                await self.terminated.wait()
            deadline = self.scope.deadline
            if deadline <= trio.current_time():
                break  # idle for `seconds` (a request would have removed the deadline)
            if self.scope.cancel_called and deadline == inf:
                self.running = False  # end_if_stopped
                self.scope = trio.CancelScope()
                return
            self.scope = trio.CancelScope(deadline=deadline)
        await action()  # its own wait returns at once: terminated, or the time is up


class Connection(TCPServer):
    """One client connection (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timer = _IdleTimer(self.config.keep_alive_timeout, self.context.terminated)
        self.idle_task = self.timer  # type: ignore[assignment]  # Hypercorn's restart/stop
        self._held = b""  # written, not yet sent: at most one small write
        self._flusher_lot = trio.lowlevel.ParkingLot()
        self._flusher_started = False
        self._reading = True

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            if isinstance(event, Closed):
                await self._send_held()
            await super().protocol_send(event)
            return
        data = event.data
        if not self._held and 0 < len(data) <= HOLD_MAX and self._reading:
            self._held = data
            if not self._flusher_started:
                self._flusher_started = True
                self._task_group.spawn(self._flush_when_parked)
            self._flusher_lot.unpark()
            return
        held, self._held = self._held, b""
        if not held and not data:
            return  # the end of a body of known length: nothing to send
        if len(data) > JOIN_MAX:
            await self._send(held, data)
        else:
            await self._send(held + data)

    async def _send_held(self) -> None:
        data, self._held = self._held, b""
        if data:
            await self._send(data)

    async def _send(self, *parts: bytes) -> None:
        """Hypercorn's send: in order (one lock), shielded, a broken stream closes.
        A free lock is taken without a checkpoint: the send that follows is one."""
        try:
            self.send_lock.acquire_nowait()
        except trio.WouldBlock:
            await self.send_lock.acquire()
        try:
            with trio.CancelScope(shield=True):
                for data in parts:
                    if data:
                        await self.stream.send_all(data)
        except _SEND_ERRORS:
            await self.protocol.handle(Closed())
        finally:
            self.send_lock.release()

    async def _flush_when_parked(self) -> None:
        """Sends what a task held once it has yielded; ends with the reader."""
        while self._reading:
            if self._held:
                await self._send_held()
            else:
                await self._flusher_lot.park()
        await self._send_held()

    async def _read_data(self) -> None:
        try:
            await super()._read_data()
        finally:
            self._reading = False  # from now on nothing is held, and the flusher ends
            self._flusher_lot.unpark_all()
            self.timer.end_if_stopped()

    async def _close(self) -> None:
        if self._held:
            with trio.CancelScope(shield=True):
                await self._send_held()
        await super()._close()


def install() -> None:
    """Serve every connection of Hypercorn's trio worker with `Connection`."""
    if hypercorn_run.TCPServer is not Connection:
        if hypercorn_run.TCPServer is not TCPServer:
            raise RuntimeError("hypercorn.trio.run.TCPServer is not Hypercorn's own")
        hypercorn_run.TCPServer = Connection  # type: ignore[misc]
