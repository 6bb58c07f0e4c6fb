"""RouteIndex answers every path as Starlette's in-order scan of aw's routes
does: the same route, the same kind of match (full, method-only, none), the
same path parameters."""

from __future__ import annotations

import itertools

from starlette.routing import BaseRoute, Match, Mount, Route

from applikant.web.app import page_routes
from applikant.web.routeindex import RouteIndex

METHODS = ("GET", "HEAD", "POST", "DELETE", "PUT")


def _scope(path: str, method: str) -> dict:
    return {"type": "http", "path": path, "root_path": "", "method": method}


def _scan(routes: list[BaseRoute], scope: dict) -> tuple[Match, BaseRoute | None, dict]:
    """Starlette's Router.app, without calling the route."""
    partial = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return match, route, child
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    if partial is not None:
        return Match.PARTIAL, partial[0], partial[1]
    return Match.NONE, None, {}


def _paths(routes: list[BaseRoute]) -> set[str]:
    """Each route's path with sample parameters, and near misses of it."""
    fills = ["o", "users", "static", "api", "login", "a/b", "x.git"]
    paths = {"", "/", "//", "/a//b", "/static", "/static/", "/api", "/api/", "/api/repos"}
    for route in routes:
        if not isinstance(route, (Route, Mount)):
            continue
        parts = route.path.split("/")
        for fill in fills:
            path = "/".join(fill if "{" in p else p for p in parts)
            mixed = "/".join(
                (fill if i % 2 else "n") if "{" in p else p for i, p in enumerate(parts)
            )
            for p in (path, mixed):
                paths.update({p, p + "/", p + "/extra", p.rsplit("/", 1)[0] or "/"})
        paths.update({route.path + "/x", "/o" + route.path})
    return paths


def test_the_index_answers_as_the_scan_for_every_route_and_near_miss() -> None:
    routes = page_routes()
    index = RouteIndex(routes)
    paths = _paths(routes)
    assert len(paths) > 300
    checked = 0
    for path, method in itertools.product(sorted(paths), METHODS):
        scope = _scope(path, method)
        want_match, want_route, want_child = _scan(routes, scope)
        got_match, got_child = index.matches(scope)
        got_route = got_child.pop("applikant.route", None)
        assert (got_match, got_route, got_child) == (want_match, want_route, want_child), path
        checked += want_match is not Match.NONE
    assert checked > 200  # most samples do reach a route


def test_a_repository_page_tries_few_routes() -> None:
    index = RouteIndex(page_routes())
    assert len(index.candidates("/o/r/tags")) < len(index.routes) // 2
    assert len(index.candidates("/o/r")) < len(index.routes) // 2


def test_url_path_for_finds_names_as_before() -> None:
    index = RouteIndex(page_routes())
    assert index.url_path_for("static", path="style.css") == "/static/style.css"
