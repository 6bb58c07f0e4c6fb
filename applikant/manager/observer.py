"""The node observer: what am knows of the cluster's nodes, for `applikant nodes`
and the web dashboard.

Fed by am's node monitor (nodeup/nodedown, each also logged) and by errors seen
while serving a node (a handler that failed, a subscriber that could not be
reached, an error a node reports itself). For every node ever seen: up or down,
since when, how often it came and went, and its last few errors.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from applikant.logs import EventLog

log = EventLog("am")

ERRORS_KEPT = 20


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class NodeState:
    name: str
    up: bool
    since: float
    ups: int = 0
    downs: int = 0
    last_down_reason: str = ""
    errors: deque[tuple[float, str]] = field(default_factory=lambda: deque(maxlen=ERRORS_KEPT))

    def as_dict(self) -> dict[str, Any]:
        return {
            "node": self.name,
            "state": "up" if self.up else "down",
            "since": _iso(self.since),
            "ups": self.ups,
            "downs": self.downs,
            "last_down_reason": self.last_down_reason,
            "errors": [{"time": _iso(t), "error": e} for t, e in self.errors],
        }


class Observer:
    """Per-node state; am's own node is always listed, up since am started."""

    def __init__(self, self_name: str) -> None:
        self.self_name = self_name
        self.nodes: dict[str, NodeState] = {self_name: NodeState(self_name, True, time.time(), 1)}

    def _state(self, name: str) -> NodeState:
        state = self.nodes.get(name)
        if state is None:
            state = self.nodes[name] = NodeState(name, False, time.time())
        return state

    def up(self, name: str) -> None:
        state = self._state(name)
        if not state.up or state.ups == 0:
            state.up, state.since = True, time.time()
            state.ups += 1
        log.info("nodeup", peer=name)

    def down(self, name: str, reason: str) -> None:
        state = self._state(name)
        state.up, state.since = False, time.time()
        state.downs += 1
        state.last_down_reason = reason
        log.info("nodedown", peer=name, reason=reason)

    def error(self, name: str, message: str) -> None:
        """Remember an error seen with `name` (a hidden CLI node is not tracked)."""
        state = self.nodes.get(name)
        if state is not None:
            state.errors.append((time.time(), message[:2000]))

    def snapshot(self) -> dict[str, Any]:
        nodes = sorted(self.nodes.values(), key=lambda s: (s.name != self.self_name, s.name))
        return {
            "am": self.self_name,
            "time": _iso(time.time()),
            "nodes": [s.as_dict() for s in nodes],
        }
