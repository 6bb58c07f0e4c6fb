"""af's link to am: kept open, re-opened when am comes back, and what to do then.

The node layer dials a peer on demand and reports nodeup/nodedown through
``Node.monitor()``; what it does not do is notice that a peer it has never
called is back, nor re-run af's side of the relationship (subscribe to am's
change events, rebuild the keys and repos, deliver spooled events). That is
this module: one task that, while am is away, tries to reach it every
``retry`` seconds, and each time the link (re)appears runs the ``on_connect``
callbacks in order. A nodedown of am (or of the link it was on) starts over.

``call`` is how the rest of af talks to am: a global name, a deadline, and one
exception, :class:`AmUnavailable`, for "am did not answer" in all its forms,
while a typed refusal from am (``RemoteError``) passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from applikant.logs import EventLog
from applikant.node.errors import CallTimeout, DistError, NodeDown, NoSuchName, Refused, RemoteError
from applikant.node.node import Node, NodeDownEvent, NodeUp

__all__ = ["PROBE_NAME", "AmLink", "AmUnavailable"]

log = EventLog("af")

#: The global name whose presence says am's services are registered.
PROBE_NAME = "am_user_db"

OnConnect = Callable[[], Awaitable[None]]


class AmUnavailable(Exception):
    """am could not be asked (down, not registered yet, too slow); one line for users."""


class AmLink:
    """Keeps af connected to ``am_node``; see the module docstring.

    ``up`` is True from the moment the ``on_connect`` callbacks have all run
    until am's node goes down.
    """

    def __init__(self, node: Node, am_node: str, retry: float = 1.0) -> None:
        self.node = node
        self.am_node = am_node
        self.retry = retry
        self.up = False
        self.connects = 0  # how many times on_connect ran to the end (tests, logs)
        self._on_connect: list[OnConnect] = []
        self._down = trio.Event()
        self._changed = trio.Event()

    def on_connect(self, callback: OnConnect) -> None:
        """Run ``callback`` every time af (re)connects to am, after those added before."""
        self._on_connect.append(callback)

    async def wait_up(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the link; whether it is up."""
        with trio.move_on_after(timeout):
            while not self.up:
                await self._changed.wait()
        return self.up

    async def call(self, target: str, method: str, args: Any = None, *, timeout: float) -> Any:
        """Call am's global ``target.method``; its reply.

        Raises :class:`AmUnavailable` when am cannot answer within ``timeout``
        and ``RemoteError`` when am answered with a typed error.
        """
        try:
            return await self.node.call(target, method, args, timeout=timeout)
        except RemoteError:
            raise
        except NoSuchName:
            raise AmUnavailable("the manager (am) is not running") from None
        except CallTimeout:
            raise AmUnavailable(f"the manager (am) did not answer within {timeout:g} s") from None
        except DistError as exc:
            raise AmUnavailable(f"the manager (am) cannot be reached ({exc})") from None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forever: connect, run the callbacks, wait for nodedown, repeat."""
        events = self.node.monitor()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, events)
            task_status.started()
            while True:
                self._down = trio.Event()
                try:
                    await self._connect_once()
                except (DistError, AmUnavailable, RemoteError, trio.TooSlowError) as exc:
                    self._set(False)
                    log.debug("am_unreachable", am=self.am_node, reason=str(exc))
                    await trio.sleep(self.retry)
                    continue
                self.connects += 1
                self._set(True)
                log.info("am_connected", am=self.am_node, connects=self.connects)
                await self._down.wait()
                self._set(False)
                log.warning("am_down", am=self.am_node)

    async def _connect_once(self) -> None:
        s = self.node.settings
        with trio.fail_after(s.connect_timeout + s.handshake_timeout):
            await self.node.connect(self.am_node)
        # am registers its names right after its node starts; wait for them.
        deadline = trio.current_time() + 10 * self.retry + 5
        while True:
            try:
                await self.node.sync(timeout=s.handshake_timeout)
            except trio.TooSlowError:
                pass
            if self.node.registry.owner(PROBE_NAME) == self.am_node:
                break
            if self._down.is_set() or self.am_node not in self.node.links:
                raise NodeDown(f"{self.am_node} went away")
            if trio.current_time() > deadline:
                raise AmUnavailable(f"{self.am_node} is up but does not serve {PROBE_NAME}")
            await trio.sleep(0.05)
        for callback in self._on_connect:
            if self._down.is_set():
                raise NodeDown(f"{self.am_node} went away while af was reconnecting")
            await callback()
        if self._down.is_set():
            raise NodeDown(f"{self.am_node} went away while af was reconnecting")

    async def _watch(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for event in events:
            if isinstance(event, NodeDownEvent) and event.node == self.am_node:
                self._down.set()
            elif isinstance(event, NodeUp) and event.node == self.am_node and not self.up:
                # A call from af re-opened the link before the retry timer did.
                self._changed.set()
                self._changed = trio.Event()

    def _set(self, up: bool) -> None:
        if self.up != up:
            self.up = up
            self._changed.set()
            self._changed = trio.Event()


# Imported by callers that catch everything a call to am can raise.
AM_ERRORS = (AmUnavailable, RemoteError, Refused)
