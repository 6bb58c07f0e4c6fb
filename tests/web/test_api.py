"""The REST API through a real aw process with am behind it."""

from __future__ import annotations

import httpx

from harness.sshd import make_client_key
from harness.web import ADMIN_LOGIN, ADMIN_PASSWORD, WebSite


def admin(site: WebSite) -> httpx.Client:
    return site.client(auth=(ADMIN_LOGIN, ADMIN_PASSWORD))


def user_client(site: WebSite, login: str) -> tuple[dict, httpx.Client]:
    user = site.user_with_password(login, f"{login}-password")
    token = site.token_for(user["id"])
    return user, site.client(headers={"authorization": f"Bearer {token}"})


def test_openapi_document_lists_the_routes(site: WebSite) -> None:
    r = site.client().get("/api/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.")
    for path in (
        "/api/repos",
        "/api/repos/{owner}/{name}",
        "/api/users/{id}/keys/{kid}",
        "/api/audit",
    ):
        assert path in doc["paths"]
    assert "post" in doc["paths"]["/api/repos"]
    assert "User" in doc["components"]["schemas"]


def test_anonymous_sees_public_repos_only_and_cannot_write(site: WebSite, name: str) -> None:
    a = admin(site)
    assert (
        a.post(
            "/api/repos", json={"owner": ADMIN_LOGIN, "name": f"{name}pub", "is_public": True}
        ).status_code
        == 201
    )
    assert (
        a.post("/api/repos", json={"owner": ADMIN_LOGIN, "name": f"{name}priv"}).status_code == 201
    )
    anon = site.client()
    names = [r["full_name"] for r in anon.get("/api/repos", params={"q": name}).json()]
    assert f"{ADMIN_LOGIN}/{name}pub" in names
    assert f"{ADMIN_LOGIN}/{name}priv" not in names
    assert anon.get(f"/api/repos/{ADMIN_LOGIN}/{name}priv").status_code == 404
    r = anon.post("/api/repos", json={"name": f"{name}x"})
    assert r.status_code == 401
    assert r.json() == {"status": 401, "message": r.json()["message"]}


def test_user_lifecycle_tokens_and_own_repos(site: WebSite, name: str) -> None:
    a = admin(site)
    r = a.post(
        "/api/users", json={"login": name, "password": "secret-pass-1", "display_name": "Test User"}
    )
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    assert a.post("/api/users", json={"login": name}).status_code == 409
    assert a.get(f"/api/users/{uid}").json()["login"] == name
    assert a.get(f"/api/users/{name}").json()["id"] == uid

    token = site.token_for(uid)
    u = site.client(headers={"authorization": f"Bearer {token}"})
    assert u.get("/api/user").json()["login"] == name
    # HTTP Basic with the token as password works too (what git sends).
    assert site.client(auth=(name, token)).get("/api/user").json()["id"] == uid

    r = u.post("/api/repos", json={"name": "proj", "description": "mine"})
    assert r.status_code == 201, r.text
    assert r.json()["full_name"] == f"{name}/proj"
    r = u.patch(f"/api/repos/{name}/proj", json={"description": "changed", "is_public": True})
    assert r.status_code == 200 and r.json()["description"] == "changed"
    r = u.patch(f"/api/repos/{name}/proj", json={"full_name": f"{name}/proj2"})
    assert r.status_code == 200 and r.json()["full_name"] == f"{name}/proj2"
    assert u.get(f"/api/repos/{name}/proj").status_code == 404
    # Not in someone else's namespace.
    assert u.post("/api/repos", json={"owner": ADMIN_LOGIN, "name": f"{name}no"}).status_code == 403
    assert u.delete(f"/api/repos/{name}/proj2").status_code == 204
    assert u.get(f"/api/repos/{name}/proj2").status_code == 404

    # Revoking the token locks it out.
    tokens = u.get(f"/api/users/{uid}/tokens").json()
    assert (len(tokens) == 1 and "token" not in tokens[0]) or tokens[0].get("token") is None
    assert u.delete(f"/api/users/{uid}/tokens/{tokens[0]['id']}").status_code == 204
    assert u.get("/api/user").status_code == 401


def test_keys_add_list_replace_remove(site: WebSite, name: str) -> None:
    user, u = user_client(site, name)
    _, pub = make_client_key(site.keys_dir, name=f"api_{name}")
    _, pub2 = make_client_key(site.keys_dir, name=f"api2_{name}")
    r = u.post(f"/api/users/{user['id']}/keys", json={"key": pub, "title": "laptop"})
    assert r.status_code == 201, r.text
    key = r.json()
    assert key["fingerprint"].startswith("SHA256:")
    assert u.post(f"/api/users/{user['id']}/keys", json={"key": pub}).status_code == 409
    r = u.post(f"/api/users/{user['id']}/keys", json={"key": "ssh-ed25519 garbage"})
    assert r.status_code == 400 and r.json()["message"]
    # PUT retitles the key, which keeps its id; its material cannot change.
    url = f"/api/users/{user['id']}/keys/{key['id']}"
    r = u.put(url, json={"title": "desktop"})
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["id"] == key["id"] and new["fingerprint"] == key["fingerprint"]
    assert new["title"] == "desktop" == u.get(url).json()["title"]
    assert u.put(url, json={"key": pub, "title": "same key"}).json()["title"] == "same key"
    r = u.put(url, json={"key": pub2, "title": "other key"})
    assert r.status_code == 409 and "POST" in r.json()["message"]
    assert u.put(url, json={"title": ""}).status_code == 422
    assert u.put(url, json={"title": "x", "owner": "me"}).status_code == 422
    keys = u.get(f"/api/users/{user['id']}/keys").json()
    assert [(k["id"], k["title"]) for k in keys] == [(key["id"], "same key")]
    entry = admin(site).get("/api/audit", params={"action": "key.update", "limit": "1"}).json()
    assert entry[0]["details"]["key"] == key["id"]
    assert u.delete(f"/api/users/{user['id']}/keys/{new['id']}").status_code == 204
    assert u.get(f"/api/users/{user['id']}/keys").json() == []


def test_another_users_key_id_is_not_found_and_untouched(site: WebSite, name: str) -> None:
    alice, a = user_client(site, f"{name}a")
    bob, b = user_client(site, f"{name}b")
    _, pub = make_client_key(site.keys_dir, name=f"k_{name}")
    key = a.post(f"/api/users/{alice['id']}/keys", json={"key": pub}).json()
    # Bob names Alice's key under his own account, and under hers.
    assert b.delete(f"/api/users/{bob['id']}/keys/{key['id']}").status_code == 404
    assert b.delete(f"/api/users/{alice['id']}/keys/{key['id']}").status_code == 403
    assert (
        b.put(f"/api/users/{bob['id']}/keys/{key['id']}", json={"title": "mine"}).status_code == 404
    )
    assert (
        b.put(f"/api/users/{alice['id']}/keys/{key['id']}", json={"title": "mine"}).status_code
        == 403
    )
    assert b.get(f"/api/users/{alice['id']}/keys").status_code == 403
    assert [(k["id"], k["title"]) for k in a.get(f"/api/users/{alice['id']}/keys").json()] == [
        (key["id"], key["title"])
    ]


def test_non_admin_on_admin_routes_is_refused(site: WebSite, name: str) -> None:
    user, u = user_client(site, name)
    evil = {"q": f"{name}evil"}
    assert u.post("/api/users", json={"login": f"{name}evil"}).status_code == 403
    assert u.post("/api/groups", json={"name": f"{name}g"}).status_code == 403
    assert u.get("/api/audit").status_code == 403
    assert u.patch(f"/api/users/{user['id']}", json={"is_admin": True}).status_code == 403
    assert u.patch(f"/api/users/{site.admin_id}", json={"display_name": "x"}).status_code == 403
    assert admin(site).get("/api/users", params=evil).json() == []
    assert u.get("/api/user").json()["is_admin"] is False


def test_bad_bodies_change_nothing(site: WebSite, name: str) -> None:
    _user, u = user_client(site, name)
    before = u.get("/api/repos").json()
    cases = [
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 400),
        (dict(content=b"[1, 2]", headers={"content-type": "application/json"}), 400),
        (dict(json={}), 422),  # missing name
        (dict(json={"name": "x" * 101}), 422),
        (dict(json={"name": "ok", "description": "d" * 5000}), 422),
        (dict(json={"name": "ok", "is_public": "yes"}), 422),
        (dict(json={"name": "ok", "surprise": 1}), 422),
        (dict(data={"name": "ok"}), 415),
        (dict(json={"name": "../../etc"}), 400),
        (dict(json={"name": "a/b"}), 400),
        (
            dict(
                content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
                headers={"content-type": "application/json"},
            ),
            413,
        ),
    ]
    for kwargs, status in cases:
        r = u.post("/api/repos", **kwargs)
        assert r.status_code == status, (kwargs.get("json"), r.status_code, r.text[:200])
        body = r.json()
        assert body["status"] == status and body["message"]
    assert u.get("/api/repos").json() == before


def test_path_traversal_in_repo_paths(site: WebSite) -> None:
    a = admin(site)
    for path in (
        "/api/repos/..%2F..%2Fetc/passwd",
        "/api/repos/%2E%2E%2Fetc/passwd",
        "/api/repos/root/%2e%2e",
        "/api/repos/%2e%2e/x",
        "/api/repos/root/a%00b",
    ):
        r = a.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
        assert r.headers["content-type"].startswith("application/json")


def test_session_changes_need_the_csrf_header(site: WebSite, name: str) -> None:
    c = site.admin_client()
    assert c.get("/api/user").json()["login"] == ADMIN_LOGIN
    r = c.post("/api/groups", json={"name": f"{name}g"})
    assert r.status_code == 403
    assert admin(site).get(f"/api/groups/{name}g").status_code == 404
    page = c.get("/settings/tokens").text
    from harness.web import csrf_of

    r = c.post("/api/groups", json={"name": f"{name}g"}, headers={"x-csrf-token": csrf_of(page)})
    assert r.status_code == 201


def test_permissions_groups_and_audit(site: WebSite, name: str) -> None:
    a = admin(site)
    owner, o = user_client(site, f"{name}o")
    member, m = user_client(site, f"{name}m")
    assert o.post("/api/repos", json={"name": "shared"}).status_code == 201
    repo = f"/api/repos/{owner['login']}/shared"
    assert m.get(repo).status_code == 404
    r = o.put(f"{repo}/permissions/{member['login']}", json={"level": "write"})
    assert r.status_code == 200, r.text
    assert m.get(repo).status_code == 200
    assert m.get(f"{repo}/access", params={"access": "write"}).json()["allowed"] is True
    assert (
        m.put(f"{repo}/permissions/{member['login']}", json={"level": "admin"}).status_code == 403
    )
    assert (
        o.put(f"{repo}/permissions/{member['login']}", json={"level": "owner"}).status_code == 422
    )
    grants = o.get(f"{repo}/permissions").json()
    assert [(g["grantee"], g["level"]) for g in grants] == [(member["login"], "write")]
    r = o.post(f"{repo}/protected-branches", json={"pattern": "main", "admins_only": True})
    assert r.status_code == 201
    assert [p["pattern"] for p in o.get(f"{repo}/protected-branches").json()] == ["main"]
    assert o.delete(f"{repo}/permissions/{member['login']}").status_code == 204
    assert m.get(repo).status_code == 404

    assert a.post("/api/groups", json={"name": f"{name}team"}).status_code == 201
    r = a.put(f"/api/groups/{name}team/members/{member['login']}")
    assert r.status_code == 200 and r.json()["members"] == [member["login"]]

    entries = a.get("/api/audit", params={"repo": f"{owner['login']}/shared"}).json()
    actions = {e["action"] for e in entries}
    assert {"repo.create", "perm.grant"} <= actions or "repo.create" in actions
    assert a.get("/api/audit", params={"limit": "0"}).status_code == 400
    assert a.get("/api/cluster").status_code == 200
    assert a.get("/api/counts").json()["users"] >= 3


def test_tokens_live_in_am_only(site: WebSite, name: str) -> None:
    user = site.user_with_password(name, f"{name}-password")
    u = site.client(auth=(name, f"{name}-password"))
    r = u.post(f"/api/users/{user['id']}/tokens", json={"title": "ci"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert set(made) == {"id", "user", "login", "title", "created_at", "last_used_at", "token"}
    # am knows the token (one source of truth); aw keeps no file of its own.
    assert site.call_am("am_user_db", "verify_token", {"token": made["token"]})["id"] == user["id"]
    assert not list(site.tmp.rglob("aw-tokens.sqlite3"))
    t = site.client(headers={"authorization": f"Bearer {made['token']}"})
    assert t.get("/api/user").json()["id"] == user["id"]
    listed = t.get(f"/api/users/{user['id']}/tokens").json()
    assert [x["id"] for x in listed] == [made["id"]] and listed[0].get("token") is None
    assert listed[0]["last_used_at"] is not None
    # Made in am (the admin command line), used through aw at once.
    other = site.call_am(
        "am_user_db", "create_token", {"actor": "system", "user": user["id"], "title": "cli"}
    )
    assert (
        site.client(headers={"authorization": f"Bearer {other['token']}"})
        .get("/api/user")
        .status_code
        == 200
    )
    # Another user's token id is not found; a bad title is refused.
    _, stranger = user_client(site, f"{name}s")
    assert stranger.delete(f"/api/users/{user['id']}/tokens/{made['id']}").status_code == 403
    assert u.post(f"/api/users/{user['id']}/tokens", json={"title": "x" * 101}).status_code == 422
    assert u.delete(f"/api/users/{user['id']}/tokens/token-999999").status_code == 404
    # A disabled account's token stops at once; revoked in am, refused by aw.
    a = admin(site)
    assert a.patch(f"/api/users/{user['id']}", json={"disabled": True}).status_code == 200
    assert t.get("/api/user").status_code == 401
    assert a.patch(f"/api/users/{user['id']}", json={"disabled": False}).status_code == 200
    site.call_am("am_user_db", "revoke_token", {"actor": "system", "token": made["id"]})
    assert t.get("/api/user").status_code == 401
    entries = a.get("/api/audit", params={"action": "token", "actor": name}).json()
    assert {e["action"] for e in entries} == {"token.create"}


def test_audit_filters_filter(site: WebSite, name: str) -> None:
    a = admin(site)
    owner, o = user_client(site, f"{name}o")
    for repo in ("one", "two"):
        assert o.post("/api/repos", json={"name": repo}).status_code == 201
    assert (
        o.put(
            f"/api/repos/{owner['login']}/one/permissions/{ADMIN_LOGIN}", json={"level": "read"}
        ).status_code
        == 200
    )
    one, two = f"{owner['login']}/one", f"{owner['login']}/two"

    def entries(**params: str) -> list[dict]:
        r = a.get("/api/audit", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    everything = entries(limit="1000")
    assert {e["action"] for e in everything} >= {"repo.create", "perm.grant", "user.add"}
    by_repo = entries(repo=one)
    assert by_repo and {e["repo"] for e in by_repo} == {one}
    assert [e["action"] for e in by_repo] == ["perm.grant", "repo.create"]
    assert {e["repo"] for e in entries(repo=f"{two}.git")} == {two}
    by_action = entries(action="perm")
    assert by_action and {e["action"] for e in by_action} <= {"perm.grant", "perm.revoke"}
    assert len(by_action) < len(everything)
    assert [e["repo"] for e in entries(action="repo.create", repo=two)] == [two]
    assert entries(action="perm", repo=two) == []
    # The actor by login or by id; times as a day or without a zone (UTC).
    mine = entries(actor=owner["login"])
    assert mine == entries(actor=owner["id"]) and {e["actor"] for e in mine} == {owner["id"]}
    assert {e["repo"] for e in mine if e["action"] == "repo.create"} == {one, two}
    today = by_repo[0]["time"][:10]
    assert entries(repo=one, since=today) == by_repo
    assert entries(repo=one, until=today) == []
    assert entries(repo=one, since=f"{today} 00:00") == by_repo
    assert entries(limit="1", repo=one) == by_repo[:1]
    for bad in ({"since": "yesterday"}, {"action": "Not An Action"}, {"actor": "ghost-user"}):
        r = a.get("/api/audit", params=bad)
        assert r.status_code == 400 and r.json()["message"], bad
    # The page uses the same filters.
    page = site.admin_client().get("/audit", params={"repo": one, "action": "perm"}).text
    assert "perm.grant" in page and "repo.create" not in page
    page = site.admin_client().get("/audit", params={"since": "yesterday"}).text
    assert "ISO 8601" in page
