"""Heartbeats (Erlang's net_ticktime): a tick to every peer four times per tick
time, and a peer that sent nothing for a whole tick time is down.

Any bytes prove a peer alive (the link's reader notes when they came), so a busy
link needs its ticks only to keep the peer's view of us alive. A frozen peer is
declared down between tick_time and 1.25 tick_time after its last bytes; this
loop is the only thing that wakes an idle node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import trio

from ..logs import EventLog
from .errors import NodeDown
from .link import Link
from .protocol import TICK

log = EventLog("dist")


async def heartbeats(links: Callable[[], Iterable[Link]], tick_time: float) -> None:
    """Tick the links `links()` returns, and close those that went silent; runs until
    cancelled."""
    while True:
        await trio.sleep(tick_time / 4)
        now = trio.current_time()
        for link in list(links()):
            silent = now - link.last_recv
            if silent > tick_time:
                log.warning("peer_silent", peer=link.peer, seconds=round(silent, 1))
                link.close(f"no heartbeat for {tick_time:g} s")
            elif not link.writing():  # else frames are going out anyway
                link.spawn(_tick, link)


async def _tick(link: Link) -> None:
    try:
        await link.send_event(TICK)
    except NodeDown:
        pass
