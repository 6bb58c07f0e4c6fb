"""Node monitors: NodeUp, NodeDownEvent and NameLost, fanned out to subscribers.

A subscriber gets a memory channel with a buffer; a subscriber that does not keep
up loses events (logged), never slows the node; one that closed its end is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from ..logs import EventLog

log = EventLog("dist")


@dataclass(frozen=True, slots=True)
class NodeUp:
    node: str


@dataclass(frozen=True, slots=True)
class NodeDownEvent:
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class NameLost:
    """This node's claim on a global name lost to another node's (after a partition)."""

    name: str
    winner: str


MonitorEvent = NodeUp | NodeDownEvent | NameLost


class Monitors:
    def __init__(self) -> None:
        self._channels: list[trio.MemorySendChannel[MonitorEvent]] = []

    def subscribe(self, buffer: int = 1000) -> trio.MemoryReceiveChannel[MonitorEvent]:
        send, recv = trio.open_memory_channel[MonitorEvent](buffer)
        self._channels.append(send)
        return recv

    def emit(self, event: MonitorEvent) -> None:
        for ch in list(self._channels):
            try:
                ch.send_nowait(event)
            except trio.WouldBlock:
                log.warning("monitor_overflow", dropped=type(event).__name__)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._channels.remove(ch)
