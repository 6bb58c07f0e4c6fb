"""Lists through aw page by am's cursors: the REST API's `limit`, `cursor` and
`Link` header (as GitHub and Gitea page), and the pages' "next" links."""

from __future__ import annotations

import re

import httpx

from harness.web import ADMIN_LOGIN, ADMIN_PASSWORD, WebSite


def admin(site: WebSite) -> httpx.Client:
    return site.client(auth=(ADMIN_LOGIN, ADMIN_PASSWORD))


def follow(client: httpx.Client, path: str, **params: str) -> tuple[list[dict], list[int]]:
    """Every item of a paged API list, by its Link headers; and the page sizes."""
    items: list[dict] = []
    sizes: list[int] = []
    r = client.get(path, params=params)
    while True:
        assert r.status_code == 200, r.text
        items += r.json()
        sizes.append(len(r.json()))
        link = r.headers.get("link")
        if link is None:
            return items, sizes
        url = re.fullmatch(r'<([^>]+)>; rel="next"', link)
        assert url is not None, link
        r = client.get(url.group(1))


def test_api_lists_page_with_link_headers(site: WebSite, name: str) -> None:
    a = admin(site)
    made = [f"{ADMIN_LOGIN}/{name}{i}" for i in range(7)]
    for full in made:
        repo = full.split("/")[1]
        assert a.post("/api/repos", json={"name": repo}).status_code == 201
    found, sizes = follow(a, "/api/repos", q=name, limit="3")
    assert [r["full_name"] for r in found] == made  # oldest first, each once
    assert sizes == [3, 3, 1]
    one = a.get("/api/repos", params={"q": name, "limit": "10"})
    assert one.headers["x-total-count"] == "7" and "link" not in one.headers
    first = a.get("/api/repos", params={"q": name, "limit": "3"})
    assert "x-total-count" not in first.headers  # not free to know
    # A repository made while paging shows up at the end; none is shown twice.
    cursor = re.search(r"cursor=([^&>]+)", first.headers["link"]).group(1)  # type: ignore[union-attr]
    assert a.post("/api/repos", json={"name": f"{name}late"}).status_code == 201
    rest, _ = follow(a, "/api/repos", q=name, limit="3", cursor=cursor)
    assert [r["full_name"] for r in rest] == [*made[3:], f"{ADMIN_LOGIN}/{name}late"]


def test_api_paging_refuses_bad_input(site: WebSite, name: str) -> None:
    a = admin(site)
    for i in range(2):
        assert a.post("/api/users", json={"login": f"{name}{i}"}).status_code == 201
    for bad in ("0", "101", "-1", "x", ""):
        r = a.get("/api/repos", params={"limit": bad})
        assert r.status_code == 400 and "limit" in r.json()["message"], bad
    for path in ("/api/repos", "/api/users", "/api/groups", "/api/audit"):
        r = a.get(path, params={"cursor": "not-a-cursor"})
        assert r.status_code == 400, path
        assert "cursor" in r.json()["message"]
    # A cursor of one list is no cursor of another.
    users = a.get("/api/users", params={"limit": "1", "q": name})
    cursor = re.search(r"cursor=([^&>]+)", users.headers["link"]).group(1)  # type: ignore[union-attr]
    assert a.get("/api/repos", params={"cursor": cursor}).status_code == 400
    assert a.get("/api/audit", params={"limit": "10001"}).status_code == 400
    assert a.get("/api/audit", params={"limit": "5000"}).status_code == 200


def test_users_groups_keys_and_audit_page(site: WebSite, name: str) -> None:
    a = admin(site)
    for i in range(5):
        assert a.post("/api/users", json={"login": f"{name}u{i}"}).status_code == 201
        assert a.post("/api/groups", json={"name": f"{name}g{i}"}).status_code == 201
    users, sizes = follow(a, "/api/users", q=name, limit="2")
    assert [u["login"] for u in users] == [f"{name}u{i}" for i in range(5)] and sizes == [2, 2, 1]
    groups, _ = follow(a, "/api/groups", limit="2")
    assert [f"{name}g{i}" for i in range(5)] == [g["name"] for g in groups if name in g["name"]]
    entries, _ = follow(a, "/api/audit", action="group.create", limit="2")
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True) and len(ids) == len(set(ids)) >= 5


def test_openapi_documents_paging(site: WebSite) -> None:
    doc = site.client().get("/api/openapi.json").json()
    get = doc["paths"]["/api/repos"]["get"]
    assert {p["name"] for p in get["parameters"]} >= {"limit", "cursor"}
    assert "Link" in get["responses"]["200"]["headers"]
    assert "parameters" not in doc["paths"]["/api/user"]["get"]


def test_pages_go_on_by_cursor(site: WebSite, name: str) -> None:
    for i in range(3):
        site.call_am("am_user_db", "add_user", {"login": f"{name}p{i}"})
    c = site.admin_client()
    r = c.get("/users", params={"q": name})
    assert r.status_code == 200 and all(f"{name}p{i}" in r.text for i in range(3))
    assert 'rel="next"' not in r.text
    # The repositories page, newest first, 100 to a page: make 101 through am.
    for i in range(101):
        site.call_am("am_repo_db", "create_repo", {"path": f"{ADMIN_LOGIN}/{name}r{i:03d}"})
    page = c.get("/repos", params={"q": f"{name}r"})
    assert f"{name}r100" in page.text and f"{name}r000<" not in page.text
    nxt = re.search(r'<a href="([^"]+)" rel="next"', page.text)
    assert nxt is not None
    older = c.get(nxt.group(1).replace("&amp;", "&"))
    assert older.status_code == 200 and f"{ADMIN_LOGIN}/{name}r000" in older.text
    assert f"{name}r100" not in older.text and 'rel="next"' not in older.text
    assert 'rel="prev"' in older.text  # back to the first page
    assert c.get("/repos", params={"after": "garbage"}).status_code == 400
