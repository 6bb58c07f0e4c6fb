"""The mesh: long-lived nodes connect transitively, and dial a lost peer again.

On a new link each side tells the other its long-lived peers (Peers), and each
dials those it lacks, so the cluster becomes a full mesh by itself. A peer lost
without a Goodbye (a crash, a partition) is dialled again, backing off to
RECONNECT_MAX seconds, until it is back or says goodbye: a healed partition heals
the mesh, and with it the registry, with no operator. Hidden ephemeral nodes
take no part in any of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ..logs import EventLog
from . import names
from .errors import DistError
from .protocol import Event, Goodbye, Peers

if TYPE_CHECKING:
    from .link import EventHandler, Link
    from .node import Node

log = EventLog("dist")

RECONNECT_FIRST = 0.25
RECONNECT_MAX = 0.5  # a peer that comes back (restarted, continued) is linked within a second


class Mesh:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.departed: set[str] = set()  # peers that said goodbye: not redialled

    def dispatch(self) -> dict[type[Event], EventHandler]:
        return {Peers: self._on_peers, Goodbye: self._on_goodbye}

    def link_up(self, peer: str) -> None:
        self.departed.discard(peer)

    def link_down(self, peer: str) -> None:
        """A long-lived peer's link ended: dial it again unless it said goodbye."""
        if peer not in self.departed:
            self.node.spawn(self._reconnect, peer)

    def _on_peers(self, link: Link, event: Peers) -> None:
        if link.hidden:
            return
        for peer in event.nodes:
            if peer != self.node.name and peer not in self.node.links:
                self.node.spawn(self._try_connect, peer)

    def _on_goodbye(self, link: Link, event: Goodbye) -> None:
        if not link.hidden:
            self.departed.add(link.peer)  # a clean stop: no reconnecting to it

    async def _try_connect(self, peer: str) -> None:
        try:
            await self.node.connect(peer)
        except (DistError, names.BadNodeName) as exc:
            log.warning("mesh_connect_failed", peer=peer, reason=str(exc))

    async def _reconnect(self, peer: str) -> None:
        delay = RECONNECT_FIRST
        failures = 0
        links = self.node.links
        while peer not in links and peer not in self.departed:
            await trio.sleep(delay)
            if peer in links or peer in self.departed:
                return
            try:
                await self.node.connect(peer)
                log.info("reconnected", peer=peer, attempts=failures + 1)
                return
            except (DistError, names.BadNodeName) as exc:
                if failures == 0:
                    log.info("reconnect_pending", peer=peer, reason=str(exc))
                failures += 1
                delay = min(delay * 2, RECONNECT_MAX)
