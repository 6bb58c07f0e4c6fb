"""Serving calls and casts: the service tables of a node and how one call runs.

Handlers are `async def handler(ctx: CallContext, args) -> result`. Each incoming
call runs in a task of its own, in the calling link's nursery (its caller's node
going down, or its caller's Cancel, cancels it); casts from one sender run one
after the other, in the order sent. A handler's ServiceError (or a node-level
error) becomes a typed error reply; any other exception is logged here in full
and answered as kind "internal", without a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from ..logs import EventLog
from .errors import (
    KIND_INTERNAL,
    DistError,
    LocalProtocolError,
    NodeDown,
    NoSuchName,
    ServiceError,
    reply_from_error,
)
from .protocol import Call, Cast, ErrorReply, Reply, State

if TYPE_CHECKING:
    from .link import Link
    from .node import Node

log = EventLog("dist")

Handler = Callable[["CallContext", Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler knows of its call: who asked (the node it came through)."""

    node: Node
    caller: str
    service: str
    method: str


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

    def on_call(self, link: Link, call: Call) -> None:
        """The link's handler for Call: serve it in a task of the link's own."""
        link.spawn(self._serve_call, link, call)

    async def _serve_call(self, link: Link, call: Call) -> None:
        with trio.CancelScope() as scope:
            link.handlers[call.req_id] = scope
            self._busy += 1
            try:
                ok, value = await self.invoke(
                    link.peer, call.node, call.target, call.method, call.args
                )
            finally:
                del link.handlers[call.req_id]
                self._busy -= 1
                if not self._busy and self._idle is not None:
                    self._idle.set()
        if scope.cancelled_caught or link.closed or link.proto.state is not State.CONNECTED:
            # The caller gave up, or its link went away meanwhile (a peer gone
            # while this node was stopped): nobody to answer. No await between
            # here and the send below, so the link cannot close in between.
            return
        reply: Reply | ErrorReply = (
            Reply(call.req_id, value) if ok else ErrorReply(call.req_id, *value)
        )
        try:
            try:
                frame = link.proto.send(reply)
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
            await link.send_bytes(frame)
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
