"""The global registry's state, without I/O: who claims which name.

Every long-lived node is authoritative for the names it registers itself and tells
each peer (the mesh is full, so everyone hears it first-hand). A name may be claimed
by several nodes at once only after partitions heal or in a registration race; then
the claim with the smallest (stamp, node) wins on every node alike, and the losing
node, seeing that it lost, withdraws its claim and tells its service.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Claim:
    node: str
    stamp: float

    def key(self) -> tuple[float, str]:
        return (self.stamp, self.node)


class GlobalRegistry:
    """Claims per name; the owner of a name is its winning claim."""

    def __init__(self, me: str) -> None:
        self.me = me
        self._claims: dict[str, dict[str, float]] = {}

    def owner(self, name: str) -> str | None:
        claims = self._claims.get(name)
        if not claims:
            return None
        if len(claims) == 1:  # the common case, on every call
            for node in claims:
                return node
        return min(claims.items(), key=lambda kv: (kv[1], kv[0]))[0]

    def beats(self, name: str, stamp: float, node: str) -> bool:
        """Whether a claim (stamp, node) would win `name` over every current claim."""
        claims = self._claims.get(name, {})
        return all((stamp, node) < (s, n) for n, s in claims.items() if n != node)

    def names(self) -> dict[str, str]:
        """Every name and the node that owns it."""
        return {name: owner for name in self._claims if (owner := self.owner(name))}

    def own(self) -> list[tuple[str, float]]:
        """The names this node claims, with their stamps (sent to each new peer)."""
        return [(n, c[self.me]) for n, c in self._claims.items() if self.me in c]

    def claim(self, name: str, node: str, stamp: float) -> list[str]:
        """Record a claim; return the names this node has just lost by it."""
        self._claims.setdefault(name, {})[node] = stamp
        return self._lost([name])

    def withdraw(self, name: str, node: str) -> None:
        claims = self._claims.get(name)
        if claims is not None:
            claims.pop(node, None)
            if not claims:
                del self._claims[name]

    def replace_node(self, node: str, entries: list[tuple[str, float]]) -> list[str]:
        """A peer's full list of names (on connect): its earlier claims are dropped."""
        self.node_down(node)
        for name, stamp in entries:
            self._claims.setdefault(name, {})[node] = stamp
        return self._lost([name for name, _ in entries])

    def node_down(self, node: str) -> list[str]:
        """Drop every claim of a node; return the names that vanished or changed hands."""
        touched = []
        for name in [n for n, c in self._claims.items() if node in c]:
            self.withdraw(name, node)
            touched.append(name)
        return touched

    def _lost(self, names: list[str]) -> list[str]:
        lost = []
        for name in names:
            claims = self._claims.get(name, {})
            if self.me in claims and self.owner(name) != self.me:
                self.withdraw(name, self.me)
                lost.append(name)
        return lost
