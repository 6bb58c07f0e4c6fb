"""Change notifications: am casts every committed change to the nodes that asked.

A node subscribes with `am_user_db.subscribe({"service": NAME})`; from then on
am casts `changed(event)` to the local service NAME on that node, for every
change event of the store (`key.added`, `repo.created`, `repo.pushed`...), in
commit order. Each subscription has its own queue and its own delivery task, so
a slow or unreachable subscriber delays nobody else. A subscription ends when
its node goes down (the node's monitor says so) or a delivery fails; the node
subscribes again when it comes back, and fetches a full snapshot then, since
events of the time it was away are not kept.
"""

from __future__ import annotations

import math
from typing import Any

import trio

from applikant.logs import EventLog
from applikant.node.errors import DistError
from applikant.node.node import Node

log = EventLog("am")

METHOD = "changed"


class _Subscription:
    def __init__(self, node: str, service: str) -> None:
        self.node = node
        self.service = service
        self.send, self.recv = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.scope = trio.CancelScope()
        self.delivered = 0


class Subscribers:
    """The subscriptions, keyed by (node, local service name)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._subs: dict[tuple[str, str], _Subscription] = {}
        self._nursery: trio.Nursery | None = None

    def start(self, nursery: trio.Nursery) -> None:
        """Deliveries run as tasks of `nursery` (am's)."""
        self._nursery = nursery

    def add(self, node: str, service: str) -> bool:
        """Subscribe (node, service); False when it already was (nothing changes)."""
        key = (node, service)
        if key in self._subs:
            return False
        assert self._nursery is not None, "Subscribers.start was not called"
        sub = _Subscription(node, service)
        self._subs[key] = sub
        self._nursery.start_soon(self._deliver, sub)
        log.info("subscribed", peer=node, service=service)
        return True

    def remove(self, node: str, service: str | None = None, reason: str = "") -> int:
        """End the subscriptions of `node` (all, or one service); how many ended."""
        ended = [k for k in self._subs if k[0] == node and (service is None or k[1] == service)]
        for key in ended:
            sub = self._subs.pop(key)
            sub.scope.cancel()
            sub.send.close()
            log.info("unsubscribed", peer=node, service=key[1], reason=reason)
        return len(ended)

    def publish(self, event: dict[str, Any]) -> None:
        """Queue `event` for every subscriber (never blocks)."""
        for sub in list(self._subs.values()):
            try:
                sub.send.send_nowait(event)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass

    def list(self) -> list[dict[str, Any]]:
        return [
            {
                "node": s.node,
                "service": s.service,
                "delivered": s.delivered,
                "queued": s.recv.statistics().current_buffer_used,
            }
            for s in self._subs.values()
        ]

    async def _deliver(self, sub: _Subscription) -> None:
        with sub.scope:
            async for event in sub.recv:
                try:
                    await self._node.cast(sub.service, METHOD, event, node=sub.node)
                except (DistError, trio.TooSlowError, OSError) as exc:
                    log.warning(
                        "subscriber_dropped",
                        peer=sub.node,
                        service=sub.service,
                        reason=str(exc) or type(exc).__name__,
                    )
                    if self._subs.get((sub.node, sub.service)) is sub:
                        self.remove(sub.node, sub.service, reason="delivery failed")
                    return
                sub.delivered += 1
