"""The one link a long-lived daemon (af, aw, ab) keeps to am.

The node layer calls global names and reports nodeup/nodedown. It does not
notice that am is back (a peer nobody has called since), wait for am's global
names once am's node is there, follow those names when another node takes them
(a standby am), nor redo the daemon's side of the relationship after each
(re)connect (subscribe to am's change events, resync, deliver a spool). That is
this module, so that af, aw and ab behave alike and each logs under its own name.

Guarantees:

* :meth:`AmClient.call` returns am's reply or raises one of two errors, both
  :class:`AmError`: :class:`AmUnavailable` when am could not be asked (not
  running, names not registered, too slow, unreachable, or answering that it
  cannot serve now, e.g. a fenced am; ``reason`` says which,
  ``str()`` says it to people) or :class:`AmRefused` when am answered with a
  typed error (``kind``, ``message``). It never takes longer than its timeout.
* :meth:`AmClient.run` keeps the link: while am is away it tries every
  ``retry`` seconds; each time it finds the node that serves am's names
  (:data:`PROBE_NAME`) it renews the subscriptions (:meth:`AmClient.subscribe`)
  and runs the ``on_connect`` callbacks, in the order they were added, then sets
  ``up``. The node going down, or the names leaving it, starts over; a failed
  callback too (after ``retry`` seconds).
* At rest (am up, no calls) it wakes once per tick time of the node layer, to
  notice names that moved without their node going down (a healed partition).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import trio

from applikant.logs import EventLog
from applikant.node.errors import CallTimeout, DistError, NodeDown, NoSuchName, RemoteError
from applikant.node.node import Node, NodeDownEvent

__all__ = ["PROBE_NAME", "AmClient", "AmError", "AmRefused", "AmUnavailable"]

#: The global name whose owner is "am": registered with the others, once am is ready.
PROBE_NAME = "am_user_db"
#: Seconds a call may spend looking for am's names again after NoSuchName.
REFRESH_WAIT = 2.0

OnConnect = Callable[[], Awaitable[None]]


class AmError(Exception):
    """A call to am did not succeed; ``kind`` for programs, ``message`` for people."""

    kind: str
    message: str


class AmUnavailable(AmError):
    """am could not be asked; ``reason`` is ``not_running``, ``timeout``,
    ``unreachable`` or ``unavailable`` (am answered that it cannot serve now)."""

    def __init__(self, message: str, reason: str = "unreachable") -> None:
        super().__init__(message)
        self.kind = "unavailable"
        self.message = message
        self.reason = reason


class AmRefused(RemoteError, AmError):
    """am answered with a typed error. Also a RemoteError: a service handler that
    lets it escape answers its own caller with am's kind and message."""


def am_error(exc: DistError, timeout: float) -> AmError:
    """The client's error for a node-layer error of a call that had ``timeout`` s."""
    if isinstance(exc, AmError):
        return exc
    if isinstance(exc, RemoteError):
        if exc.kind == "unavailable":  # am is there but cannot serve (a fenced am)
            return AmUnavailable(exc.message, "unavailable")
        return AmRefused(exc.kind, exc.message)
    if isinstance(exc, NoSuchName):
        return AmUnavailable("the manager (am) is not running", "not_running")
    if isinstance(exc, CallTimeout):
        return AmUnavailable(f"the manager (am) did not answer within {timeout:g} s", "timeout")
    return AmUnavailable(f"the manager (am) cannot be reached ({_first_line(exc)})")


class AmClient:
    """``node``'s link to am, found through ``am_node`` (or any of several seeds).

    ``component`` (af, aw, ab) names the log. ``timeout`` is a call's default
    deadline (the node layer's ``call_timeout`` when None). ``am`` is the node
    that serves am's names now (None before the first connect).
    """

    def __init__(
        self,
        node: Node,
        am_node: str | Sequence[str],
        *,
        component: str,
        retry: float = 1.0,
        timeout: float | None = None,
    ) -> None:
        self.node = node
        self.seeds = (am_node,) if isinstance(am_node, str) else tuple(am_node)
        self.am_node = self.seeds[0]
        self.component = component
        self.retry = retry
        self.timeout = node.settings.call_timeout if timeout is None else timeout
        self.am: str | None = None
        self.up = False
        self.connects = 0  # how many times on_connect ran to the end (status, tests)
        self.log = EventLog(component)
        self._on_connect: list[OnConnect] = []
        self._lost = trio.Event()

    def on_connect(self, callback: OnConnect) -> None:
        """Run ``callback`` each time the link to am is (re)made, after those added before."""
        self._on_connect.append(callback)

    def subscribe(self, service: str, *, timeout: float | None = None) -> None:
        """From each (re)connect on, have am cast its change events to ``service``
        (a local service of this node, method ``changed``); renewed in the order of
        the callbacks, so those added after this one see the events that follow."""

        async def renew() -> None:
            await self.call(PROBE_NAME, "subscribe", {"service": service}, timeout=timeout)

        self.on_connect(renew)

    # ---- calls ------------------------------------------------------------------

    async def call(
        self, service: str, method: str, args: Any = None, *, timeout: float | None = None
    ) -> Any:
        """Call am's global ``service.method``; its reply.

        Raises :class:`AmUnavailable` or :class:`AmRefused` (see the module
        docstring), within ``timeout`` seconds.
        """
        limit = self.timeout if timeout is None else timeout
        deadline = trio.current_time() + limit
        try:
            try:
                return await self.node.call(service, method, args, timeout=limit)
            except NoSuchName:
                # Perhaps only our registry is behind (am just restarted, or its
                # names moved): look for them once more, within the deadline.
                self._check_names()
                await self._refresh(deadline)
                left = deadline - trio.current_time()
                if left <= 0:
                    raise
                return await self.node.call(service, method, args, timeout=left)
        except DistError as exc:
            raise am_error(exc, limit) from None

    async def _refresh(self, deadline: float) -> None:
        with trio.move_on_at(min(deadline, trio.current_time() + REFRESH_WAIT)):
            await self._dial()
            try:
                await self.node.sync(timeout=1.0)
            except trio.TooSlowError:
                pass

    async def _dial(self) -> str:
        """Connect to the first seed that answers; its name, or the last seed's error."""
        s = self.node.settings
        error: DistError = NodeDown("no am node configured")
        for seed in self.seeds:
            try:
                with trio.fail_after(s.connect_timeout + s.handshake_timeout):
                    await self.node.connect(seed)
                return seed
            except trio.TooSlowError:
                error = NodeDown(f"could not connect to {seed} in time")
            except DistError as exc:
                error = exc
        raise error

    # ---- the link -----------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forever: find am, run the callbacks, wait until it is lost, repeat."""
        events = self.node.monitor()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch, events)
            task_status.started()
            while True:
                self._lost = trio.Event()
                try:
                    am = await self._connect_once()
                except (DistError, AmError, trio.TooSlowError) as exc:
                    self.log.debug("am_unreachable", am=self.am_node, reason=_first_line(exc))
                    await trio.sleep(self.retry)
                    continue
                self.connects += 1
                self.up = True
                self.log.info("am_connected", am=am, connects=self.connects)
                await self._stay_up()
                self.up = False
                if am in self.node.nodes():  # its node is there, am's names are not
                    owner = self.node.registry.owner(PROBE_NAME)
                    self.log.warning("am_moved", am=am, to=owner or "-")
                else:
                    self.log.warning("am_down", am=am)

    async def _connect_once(self) -> str:
        owner = self.node.registry.owner(PROBE_NAME)
        if owner is None:
            seed = await self._dial()
            owner = await self._wait_for_names(seed)
        self.am = owner
        s = self.node.settings
        with trio.fail_after(s.connect_timeout + s.handshake_timeout):
            await self.node.connect(owner)
        for callback in self._on_connect:
            self._raise_if_lost()
            await callback()
        self._raise_if_lost()
        return owner

    async def _wait_for_names(self, seed: str) -> str:
        """am registers its names right after its node starts: wait for them."""
        s = self.node.settings
        deadline = trio.current_time() + 10 * self.retry + 5
        while True:
            try:
                await self.node.sync(timeout=s.handshake_timeout)
            except trio.TooSlowError:
                pass
            owner = self.node.registry.owner(PROBE_NAME)
            if owner is not None:
                return owner
            if seed not in self.node.nodes():
                raise NodeDown(f"{seed} went away")
            if trio.current_time() > deadline:
                raise AmUnavailable(f"{seed} is up but does not serve {PROBE_NAME}")
            await trio.sleep(0.05)

    def _raise_if_lost(self) -> None:
        if self._lost.is_set():
            raise NodeDown(f"{self.am} went away while {self.component} was reconnecting")

    async def _stay_up(self) -> None:
        tick = self.node.settings.tick_time
        while not self._lost.is_set():
            with trio.move_on_after(tick):
                await self._lost.wait()
            self._check_names()

    def _check_names(self) -> None:
        """While up: am's names no longer on the node we connected to means lost."""
        if self.up and self.node.registry.owner(PROBE_NAME) != self.am:
            self._lost.set()

    async def _watch(self, events: trio.MemoryReceiveChannel[Any]) -> None:
        async for event in events:
            if isinstance(event, NodeDownEvent) and event.node == self.am:
                self._lost.set()


def _first_line(exc: BaseException) -> str:
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
