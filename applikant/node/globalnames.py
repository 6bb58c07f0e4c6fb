"""The global registry's trio side: claims told to every peer, their news applied,
`sync`, and the names this node loses when partitions heal.

The state and the rule of who wins are registry.py's (no I/O); the messages are
events of the sans-IO core (NamesHeld, NameClaimed, NameReleased, SyncRequest,
SyncAck). Hidden ephemeral nodes take no part: their registry messages are ignored.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import trio

from ..logs import EventLog
from .errors import NameTaken, NodeDown
from .monitor import NameLost
from .protocol import Event, NameClaimed, NameReleased, NamesHeld, SyncAck, SyncRequest
from .registry import GlobalRegistry
from .serving import Handler, Service

if TYPE_CHECKING:
    from .link import EventHandler, Link
    from .node import Node

log = EventLog("dist")


class GlobalNames:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.registry = GlobalRegistry(node.name)
        self._tokens = itertools.count(1)
        self._sync_waiters: dict[int, tuple[str, trio.Event]] = {}

    def dispatch(self) -> dict[type[Event], EventHandler]:
        """The link handlers of the registry's events."""
        return {
            NamesHeld: self._on_names_held,
            NameClaimed: self._on_claimed,
            NameReleased: self._on_released,
            SyncRequest: self._on_sync_request,
            SyncAck: self._on_sync_ack,
        }

    # ---- our own claims -----------------------------------------------------------

    async def register(
        self,
        name: str,
        handlers: Mapping[str, Handler],
        on_lost: Callable[[str, str], None] | None,
        stamp: float | None = None,
    ) -> None:
        me = self.node.name
        owner = self.registry.owner(name)
        taken = owner is not None and owner != me
        if taken and (stamp is None or not self.registry.beats(name, stamp, me)):
            raise NameTaken(f"{name} is already registered by {owner}")
        if stamp is None:
            stamp = time.time()
        self.registry.claim(name, me, stamp)
        self.node.services.globals[name] = Service(handlers, on_lost)
        log.info("global_registered", name=name)
        await self.broadcast(NameClaimed(name, stamp))

    async def unregister(self, name: str) -> None:
        if self.node.services.globals.pop(name, None) is not None:
            self.registry.withdraw(name, self.node.name)
            await self.broadcast(NameReleased(name))

    async def broadcast(self, event: Event) -> None:
        """Tell every long-lived peer; a peer going down meanwhile is skipped."""
        for link in list(self.node.links.values()):
            if not link.hidden:
                try:
                    await link.send_event(event)
                except NodeDown:
                    pass

    async def _lose(self, name: str) -> None:
        service = self.node.services.globals.pop(name, None)
        winner = self.registry.owner(name) or "?"
        log.warning("global_name_lost", name=name, winner=winner)
        self.node.monitors.emit(NameLost(name, winner))
        if service is not None and service.on_lost is not None:
            service.on_lost(name, winner)
        await self.broadcast(NameReleased(name))

    # ---- a peer's news ------------------------------------------------------------

    async def _on_names_held(self, link: Link, event: NamesHeld) -> None:
        if not link.hidden:
            for name in self.registry.replace_node(link.peer, event.entries):
                await self._lose(name)

    async def _on_claimed(self, link: Link, event: NameClaimed) -> None:
        if not link.hidden:
            for name in self.registry.claim(event.name, link.peer, event.stamp):
                await self._lose(name)

    def _on_released(self, link: Link, event: NameReleased) -> None:
        if not link.hidden:
            self.registry.withdraw(event.name, link.peer)

    async def _on_sync_request(self, link: Link, event: SyncRequest) -> None:
        if not link.hidden:  # everything the peer sent before is applied: say so
            await link.send_event(SyncAck(event.token))

    def _on_sync_ack(self, link: Link, event: SyncAck) -> None:
        waiter = self._sync_waiters.get(event.token)
        if waiter is not None and waiter[0] == link.peer:
            del self._sync_waiters[event.token]
            waiter[1].set()

    def link_down(self, peer: str) -> None:
        """A long-lived peer is gone: its claims go, and syncs stop waiting for it."""
        for token, (p, done) in list(self._sync_waiters.items()):
            if p == peer:
                done.set()
                del self._sync_waiters[token]
        self.registry.node_down(peer)

    # ---- sync ---------------------------------------------------------------------

    async def sync(self) -> None:
        """One round trip on every long-lived link: each peer has then told us all it
        knew before (a link keeps order)."""
        waits = []
        for link in [lnk for lnk in self.node.links.values() if not lnk.hidden]:
            token = next(self._tokens)
            done = trio.Event()
            self._sync_waiters[token] = (link.peer, done)
            waits.append(done)
            try:
                await link.send_event(SyncRequest(token))
            except NodeDown:
                done.set()
        for done in waits:
            await done.wait()
