"""Serving calls and casts: the service tables of a node and how one call runs.

Handlers are `async def handler(ctx: CallContext, args) -> result`. An incoming
call starts in the link's reader (eager.py): one that finishes without waiting
is answered at once, with no task of its own; one that waits goes on in the
reader's task, whose cancel scope the caller's Cancel then cancels, while a new
task reads the link. Either way it runs in the calling link's nursery (its
caller's node going down cancels it). Casts from one sender run one after the
other, in the order sent. A handler's ServiceError (or a node-level
error) becomes a typed error reply; any other exception is logged here in full
and answered as kind "internal", without a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ..logs import EventLog
from . import eager
from .errors import (
    KIND_INTERNAL,
    DistError,
    LocalProtocolError,
    NodeDown,
    NoSuchName,
    ServiceError,
    reply_from_error,
)
from .protocol import Call, Cast, ErrorReply, State

if TYPE_CHECKING:
    from .link import Link
    from .node import Node

log = EventLog("dist")

Handler = Callable[["CallContext", Any], Awaitable[Any]]


class CallContext:
    """What a handler knows of its call: who asked (the node it came through).
    A plain slotted class, one made per call served: a frozen dataclass's
    __init__ costs three times as much. Read it; do not change it."""

    __slots__ = ("caller", "method", "node", "service")

    def __init__(self, node: Node, caller: str, service: str, method: str) -> None:
        self.node = node
        self.caller = caller
        self.service = service
        self.method = method

    def __repr__(self) -> str:
        return (
            f"CallContext(node={self.node!r}, caller={self.caller!r}, "
            f"service={self.service!r}, method={self.method!r})"
        )


@dataclass
class Service:
    handlers: Mapping[str, Handler]
    on_lost: Callable[[str, str], None] | None = None


class Services:
    """The services of one node: global names it holds, local names, and the
    counters operators see (/metrics, `applikant status`)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.globals: dict[str, Service] = {}
        self.locals: dict[str, Service] = {}
        self.counters = {"calls_made": 0, "calls_served": 0, "call_errors": 0}
        self._busy = 0  # calls from links running now
        self._idle: trio.Event | None = None  # set when _busy drops to 0, if awaited

    async def invoke(
        self, caller: str, node: str | None, target: str, method: str, args: Any
    ) -> tuple[bool, Any]:
        """Run one call here (or forward a global one); (True, value) or (False, (kind, msg))."""
        counters = self.counters
        counters["calls_served"] += 1
        me = self.node.name
        try:
            if node is not None:
                if node != me:
                    raise NoSuchName(f"this is {me}, not {node}")
                service = self.locals.get(target)
                if service is None:
                    raise NoSuchName(f"no service {target} on {me}")
            else:
                service = self.globals.get(target)
                if service is None:
                    owner = self.node.registry.owner(target)
                    if owner is None or owner == me:
                        raise NoSuchName(f"no service is registered as {target}")
                    # A hidden caller reached us only: forward over the mesh.
                    return True, await self.node.call(target, method, args, timeout=math.inf)
            handler = service.handlers.get(method)
            if handler is None:
                raise ServiceError(f"{target} has no method {method!r}", kind="no_such_method")
            return True, await handler(CallContext(self.node, caller, target, method), args)
        except (DistError, ServiceError) as exc:
            counters["call_errors"] += 1
            answer = reply_from_error(exc)
            if answer is not None:
                return False, answer
            return False, (KIND_INTERNAL, str(exc))
        except Exception:
            counters["call_errors"] += 1
            log.exception("handler_crashed", service=target, method=method, caller=caller)
            return False, (
                KIND_INTERNAL,
                f"{target}.{method} failed on {me}; its log has the details",
            )

    def on_call(self, link: Link, call: Call) -> Awaitable[None] | None:
        """The link's handler for Call, run by its reader: the call's answer at
        once if its handler does not wait, else an awaitable that serves it to the
        end in the reader's task (which hands the reading on)."""
        self._busy += 1
        coro = self.invoke(link.peer, call.node, call.target, call.method, call.args)
        try:  # (eager.start written out: once per call)
            step = coro.send(None)
        except StopIteration as finished:
            self._done_one()
            self._answer(link, call, finished.value)
            return None
        except BaseException:
            self._done_one()
            raise
        scope = link.reader_scope  # (this task's: the new reader gets its own)
        link.read_elsewhere()
        return self._serve_rest(link, call, coro, step, scope)

    async def _serve_rest(
        self,
        link: Link,
        call: Call,
        coro: Coroutine[Any, Any, Any],
        trap: Any,
        scope: trio.CancelScope,
    ) -> None:
        """The rest of a call whose handler waited, in this task, which does
        nothing else now: the caller's Cancel cancels the task's scope (no answer
        then goes out; the cancellation ends the task's reading loop)."""
        link.handlers[call.req_id] = scope
        try:
            outcome = await eager.resume(coro, trap)
        finally:
            del link.handlers[call.req_id]
            self._done_one()
        self._answer(link, call, outcome)

    def _done_one(self) -> None:
        self._busy -= 1
        if not self._busy and self._idle is not None:
            self._idle.set()

    def _answer(self, link: Link, call: Call, outcome: tuple[bool, Any]) -> None:
        if link.closed or link.proto.state is not State.CONNECTED:
            return  # the caller is gone, or its link is closing: no answer wanted
        ok, value = outcome
        try:
            try:
                frame: bytes | list[bytes] = (
                    link.proto.send_reply(call.req_id, value)
                    if ok
                    else link.proto.send_parts(ErrorReply(call.req_id, *value))
                )
            except LocalProtocolError as exc:
                log.error(
                    "reply_unencodable", service=call.target, method=call.method, reason=str(exc)
                )
                frame = link.proto.send(
                    ErrorReply(
                        call.req_id,
                        KIND_INTERNAL,
                        f"{call.target}.{call.method} gave an answer that cannot be sent",
                    )
                )
            link.send_soon(frame)
        except NodeDown:
            pass

    async def run_casts(self, caller: str, inbox: trio.MemoryReceiveChannel[Cast]) -> None:
        """Casts from one sender are handled one after the other, in the order
        sent (Erlang's guarantee between two processes): a key removed after it
        was added is never seen the other way round."""
        async for cast in inbox:
            await self.invoke(caller, cast.node, cast.target, cast.method, cast.args)

    async def link_casts(self, link: Link) -> None:
        """A link's cast task (started with the link, ended with it)."""
        await self.run_casts(link.peer, link.cast_inbox)

    async def wait_idle(self) -> None:
        """Return once no call from a link is running (at once if none is)."""
        while self._busy:
            self._idle = trio.Event()
            await self._idle.wait()
        self._idle = None

    @property
    def busy(self) -> int:
        """Calls from links running now."""
        return self._busy
