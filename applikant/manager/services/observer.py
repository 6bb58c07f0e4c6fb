"""`am_observer`: the node observer as a service, for `applikant nodes` and
aw's dashboard.

`cluster()` -> {"am", "time", "nodes": [{node, state, since, ups, downs,
last_down_reason, errors}]}, `subscribers()` -> the current subscriptions,
`report_error({"error"})` for a node to note an error of its own against its
name. The models are applikant.schema.observer (AM_OBSERVER).

`watch_nodes` feeds the observer from am's node monitor, and ends the change
subscriptions of a node that goes down.
"""

from __future__ import annotations

from typing import Any

import trio

from applikant.logs import EventLog
from applikant.manager.runtime import Manager
from applikant.manager.services.base import Service
from applikant.node.node import CallContext, NodeDownEvent, NodeUp
from applikant.schema.observer import AM_OBSERVER, ReportError

log = EventLog("am")


class ObserverService(Service):
    NAME = "am_observer"
    SCHEMA = AM_OBSERVER

    async def cluster(self, ctx: CallContext, req: None) -> Any:
        return self.m.observer.snapshot()

    async def subscribers(self, ctx: CallContext, req: None) -> Any:
        return self.m.subscribers.list()

    async def report_error(self, ctx: CallContext, req: ReportError) -> Any:
        self.m.observer.error(ctx.caller, req.error)
        log.warning("node_reported_error", peer=ctx.caller, error=req.error)
        return None


async def watch_nodes(manager: Manager, events: trio.MemoryReceiveChannel[Any]) -> None:
    """Forever: nodeup and nodedown into the observer; a node that goes down
    loses its subscriptions (it subscribes again when it comes back)."""
    async with events:
        async for event in events:
            if isinstance(event, NodeUp):
                manager.observer.up(event.node)
            elif isinstance(event, NodeDownEvent):
                manager.observer.down(event.node, event.reason)
                manager.subscribers.remove(event.node, reason="node down")
