"""aw's page routes, looked up by the shape of the path instead of one by one.

Starlette's router tries each route's regular expression in order until one
matches: a repository page, near the end of about sixty routes, paid some fifty
of them on every request. `RouteIndex` is one route standing for all of them:
it keeps them in their order, and for a path tries only those that could match
it, by its first segment and its number of segments. The first full match
still wins, a method-only match (405) still comes after, so the answer is the
one the plain list gives (tests/web/test_routeindex.py checks that).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette._utils import get_route_path
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, Mount, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

__all__ = ["RouteIndex"]

_CHOSEN = "applikant.route"  # the scope key that carries the chosen route to handle()


def _shape(route: BaseRoute) -> tuple[str | None, int | None]:
    """(the literal first segment, the number of segments) a path must have for
    `route` to match it; None where any will do."""
    if not isinstance(route, (Mount, Route)) or not route.path.startswith("/"):
        return None, None
    if isinstance(route, Mount):
        first = route.path.split("/")[1]
        return (None if "{" in first else first), None
    segments = route.path.split("/")[1:]
    first = segments[0]
    count = None if ":path}" in route.path else len(segments)
    return (None if "{" in first else first), count


class RouteIndex(BaseRoute):
    """`routes` as one route (see the module docstring)."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = list(routes)
        self._shapes = [_shape(route) for route in self.routes]
        self._firsts = {first for first, _ in self._shapes if first is not None}
        self._longest = max((n for _, n in self._shapes if n is not None), default=0)
        self._candidates: dict[tuple[str | None, int], tuple[BaseRoute, ...]] = {}

    def candidates(self, path: str) -> tuple[BaseRoute, ...]:
        """The routes, in order, that may match `path` (a superset of those that do)."""
        segments = path.split("/")[1:]
        if not segments:
            return tuple(self.routes)
        first = segments[0] if segments[0] in self._firsts else None
        count = min(len(segments), self._longest + 1)
        key = (first, count)
        found = self._candidates.get(key)
        if found is None:
            found = tuple(
                route
                for route, (f, n) in zip(self.routes, self._shapes, strict=True)
                if (f is None or f == first) and (n is None or n == count)
            )
            self._candidates[key] = found  # bounded: len(_firsts) + 1 by _longest + 2 keys
        return found

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        routes = self.candidates(get_route_path(scope)) if scope["type"] == "http" else self.routes
        partial: tuple[BaseRoute, Scope] | None = None
        for route in routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return Match.FULL, {**child_scope, _CHOSEN: route}
            if match is Match.PARTIAL and partial is None:
                partial = (route, child_scope)
        if partial is not None:
            return Match.PARTIAL, {**partial[1], _CHOSEN: partial[0]}
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.pop(_CHOSEN)
        scope["route"] = route
        await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)
