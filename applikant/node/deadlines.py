"""Call deadlines of a node on one heap, with one task asleep until the earliest.

A cancel scope per call would cost about a quarter of a call's CPU time, and a
sweeper that polls wakes the node fifty times a second for nothing. Here each call
pushes its deadline on a heap; one task sleeps until the earliest deadline that
may still fire (`trio.sleep_until`, by hand: its cancel scope's deadline is moved
forward when an earlier one comes, which costs no wake-up), fails the calls that
are overdue and sleeps again. With no call waiting, it sleeps for good.

Answered calls are not taken off the heap (heapq cannot remove from the middle):
they are dropped when they reach the top, and the heap is rebuilt from the live
entries whenever it has grown to twice their number (plus a margin), so it stays
as small as the number of calls in flight.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import Protocol

import trio

MIN_REBUILD = 64


class Expiring(Protocol):
    """What the heap holds: something that can be settled early or expired."""

    @property
    def settled(self) -> bool: ...

    def expire(self) -> None: ...


class Deadlines:
    """Expire each added item at its deadline unless it is settled before."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Expiring]] = []
        self._order = itertools.count()
        self._limit = MIN_REBUILD
        self._timer: trio.CancelScope | None = None
        self._timer_at = math.inf  # the timer's deadline

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, when: float, item: Expiring) -> None:
        """Expire `item` at trio time `when` (math.inf: never; nothing is kept)."""
        if when == math.inf:
            return
        heapq.heappush(self._heap, (when, next(self._order), item))
        timer = self._timer
        if timer is not None and when < self._timer_at:  # (the property read costs a call)
            timer.deadline = self._timer_at = when
        if len(self._heap) > self._limit:
            self._rebuild()

    async def run(self) -> None:
        """Expire items as their deadlines pass; runs until cancelled."""
        while True:
            heap, now = self._heap, trio.current_time()
            while heap and (heap[0][2].settled or heap[0][0] <= now):
                item = heapq.heappop(heap)[2]
                if not item.settled:
                    item.expire()
            earliest = heap[0][0] if heap else math.inf
            self._timer_at = earliest
            with trio.CancelScope(deadline=earliest) as self._timer:  # trio.sleep_until
                await trio.sleep_forever()
            self._timer = None

    def _rebuild(self) -> None:
        self._heap = [entry for entry in self._heap if not entry[2].settled]
        heapq.heapify(self._heap)
        self._limit = max(MIN_REBUILD, 2 * len(self._heap))
