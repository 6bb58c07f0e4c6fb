"""The API's route table is its authorization: for every route, every caller
below the route's declared access is refused (through a real aw with am
behind it), nothing changes, and the OpenAPI document shows that same access."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from applikant.schema import repos, sessions, users, webhooks
from applikant.web.api import ROUTES
from applikant.web.apitable import (
    ADMIN,
    ANONYMOUS,
    LOGGED_IN,
    REPO_ADMIN,
    REPO_READ,
    REPO_WRITE,
    SELF,
    Access,
    ApiRoute,
)
from harness.sshd import make_client_key
from harness.web import ADMIN_LOGIN, ADMIN_PASSWORD, WebSite

# Who is below each access, and the status they get.
BELOW: dict[Access, list[tuple[str, int]]] = {
    ANONYMOUS: [],
    LOGGED_IN: [("anonymous", 401)],
    ADMIN: [("anonymous", 401), ("stranger", 403)],
    SELF: [("anonymous", 401), ("stranger", 403)],
    REPO_READ: [("anonymous", 404), ("stranger", 404)],
    REPO_WRITE: [("anonymous", 401), ("stranger", 404), ("reader", 403)],
    REPO_ADMIN: [("anonymous", 401), ("stranger", 404), ("reader", 403), ("writer", 403)],
}


@dataclass
class World:
    """A private repository with a reader and a writer, another user (`victim`)
    with a key and a token, a group, and an HTTP client per caller."""

    params: dict[str, str]
    clients: dict[str, httpx.Client]
    bodies: dict[type, dict[str, Any]]


@pytest.fixture
def world(site: WebSite, name: str) -> World:
    admin = site.client(auth=(ADMIN_LOGIN, ADMIN_PASSWORD))
    people = {}
    passwords = {}
    for role in ("owner", "reader", "writer", "stranger", "victim"):
        passwords[role] = f"{name}-{role}-password"
        user = site.user_with_password(f"{name}{role[:3]}", passwords[role])
        token = site.token_for(user["id"])
        people[role] = (user, site.client(headers={"authorization": f"Bearer {token}"}))
    owner, o = people["owner"]
    victim, v = people["victim"]
    assert o.post("/api/repos", json={"name": "secret"}).status_code == 201
    repo = f"/api/repos/{owner['login']}/secret"
    for role, level in (("reader", "read"), ("writer", "write")):
        r = o.put(f"{repo}/permissions/{people[role][0]['login']}", json={"level": level})
        assert r.status_code == 200, r.text
    assert o.post(f"{repo}/protected-branches", json={"pattern": "main"}).status_code == 201
    _, pub = make_client_key(site.keys_dir, name=f"access_{name}")
    _, other = make_client_key(site.keys_dir, name=f"access2_{name}")
    key = v.post(f"/api/users/{victim['id']}/keys", json={"key": pub}).json()
    # A token proves no password: the victim makes this one with theirs.
    token = v.post(
        f"/api/users/{victim['id']}/tokens",
        json={"title": "ci", "current_password": passwords["victim"]},
    ).json()
    assert admin.post("/api/groups", json={"name": f"{name}grp"}).status_code == 201
    stranger = people["stranger"][0]
    return World(
        params={
            "owner": owner["login"],
            "name": "secret",
            "grantee": stranger["login"],
            "id": victim["id"],
            "kid": key["id"],
            "tid": token["id"],
            "login": stranger["login"],
            "hook": "hook-1",
            "delivery": "00000000-0000-4000-8000-000000000000",
        },
        clients={"anonymous": site.client(), **{role: c for role, (_, c) in people.items()}},
        bodies={
            repos.RepoCreate: {"owner": owner["login"], "name": "another"},
            repos.RepoPatch: {"description": "changed", "is_public": True},
            repos.GrantLevel: {"level": "admin"},
            repos.BranchRule: {"pattern": "release/*", "admins_only": True},
            users.NewUser: {"login": f"{name}new", "is_admin": True},
            sessions.UserPatchBody: {"display_name": "changed", "password": "changed-password"},
            users.NewKey: {"key": other},
            users.KeyPut: {"title": "changed"},
            sessions.NewTokenBody: {"title": "stolen"},
            users.NewGroup: {"name": f"{name}grp2"},
            webhooks.NewHook: {"url": "http://127.0.0.1:9/stolen", "events": ["push"]},
            webhooks.HookPatch: {"url": "http://127.0.0.1:9/changed"},
        },
    )


def _url(route: ApiRoute, params: dict[str, str]) -> str:
    return "/api" + route.path.format(**params)


def _newest_audit_entry(site: WebSite) -> int:
    admin = site.client(auth=(ADMIN_LOGIN, ADMIN_PASSWORD))
    entries = admin.get("/api/audit", params={"limit": "1"}).json()
    return int(entries[0]["id"])


def test_every_route_declares_an_access_the_walk_knows() -> None:
    assert ROUTES
    for route in ROUTES:
        assert route.access in BELOW, (route.method, route.path, route.access)


def test_callers_below_the_declared_access_are_refused(site: WebSite, world: World) -> None:
    before = _newest_audit_entry(site)
    refused = 0
    for route in ROUTES:
        if route.body is not None:
            assert route.body in world.bodies, f"give {route.body.__name__} an example body"
        body = world.bodies.get(route.body) if route.body is not None else None
        for caller, status in BELOW[route.access]:
            r = world.clients[caller].request(route.method, _url(route, world.params), json=body)
            what = f"{route.method} {route.path} as {caller}: {r.status_code} {r.text[:200]}"
            assert r.status_code == status, what
            assert r.json() == {"status": status, "message": r.json()["message"]}, what
            assert r.json()["message"], what
            refused += 1
    assert refused >= 60
    assert _newest_audit_entry(site) == before  # nothing was changed


def test_the_document_shows_the_enforced_access(site: WebSite) -> None:
    doc = site.client().get("/api/openapi.json").json()
    operations = {
        (method.upper(), path.removeprefix("/api")): op
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    assert set(operations) == {(r.method, r.path) for r in ROUTES}
    for route in ROUTES:
        op = operations[(route.method, route.path)]
        assert op["x-access"] == route.access.name
        assert route.access.text in op["description"]
        assert ("security" in op and {} not in op["security"]) == route.access.login
