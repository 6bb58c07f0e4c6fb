"""A small least-recently-used cache bounded by a total cost (about bytes).

aw keeps what it computed from immutable git objects (a highlighted blob, a
commit's diff, the last commits of a tree at one commit) so that a page seen
twice is computed once. Keys must name immutable things (object ids, never
branch names); nothing here expires by time.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["Lru"]

K = TypeVar("K")
V = TypeVar("V")


class Lru(Generic[K, V]):
    """`get`/`put`; the least recently used entries go when `max_cost` is exceeded."""

    def __init__(self, max_cost: int) -> None:
        self.max_cost = max_cost
        self.cost = 0
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def get(self, key: K) -> V | None:
        found = self._items.get(key)
        if found is None:
            return None
        self._items.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, cost: int = 1) -> None:
        if cost > self.max_cost // 4:
            return  # one huge entry would push out everything else
        old = self._items.pop(key, None)
        if old is not None:
            self.cost -= old[1]
        self._items[key] = (value, cost)
        self.cost += cost
        while self.cost > self.max_cost and self._items:
            _, (_, dropped) = self._items.popitem(last=False)
            self.cost -= dropped

    def __len__(self) -> int:
        return len(self._items)
