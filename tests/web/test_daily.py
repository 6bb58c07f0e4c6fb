"""Daily use through a real aw with am, af and sshd behind it: editing and
deleting accounts (pages and API), webhooks over the REST API (with a real
receiver), build status badges and the build status of commits."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from harness.wait import wait_until
from harness.web import ADMIN_LOGIN, ADMIN_PASSWORD, WebSite, csrf_of
from tests.webhooks.receiver import SECRET
from tests.webhooks.threaded import ThreadedReceiver


def admin(site: WebSite) -> httpx.Client:
    return site.client(auth=(ADMIN_LOGIN, ADMIN_PASSWORD))


def test_details_are_edited_on_the_users_page(site: WebSite, name: str) -> None:
    site.user_with_password(name, f"{name}-password")
    me = site.login(name, f"{name}-password")
    page = me.get(f"/users/{name}")
    assert 'id="details-form"' in page.text and 'id="delete-form"' not in page.text
    r = me.post(
        f"/users/{name}/details",
        data={"display_name": "New Name", "email": "new@example.org", "csrf": csrf_of(page.text)},
    )
    assert r.status_code == 303
    shown = site.call_am("am_user_db", "get_user", {"user": name})
    assert (shown["display_name"], shown["email"]) == ("New Name", "new@example.org")
    r = me.post(
        f"/users/{name}/details",
        data={"display_name": "x", "email": "not an email", "csrf": csrf_of(page.text)},
    )
    assert r.status_code == 303
    assert "email" in me.get(f"/users/{name}").text  # the refusal, flashed
    assert site.call_am("am_user_db", "get_user", {"user": name})["email"] == "new@example.org"
    # Someone else's details: refused.
    site.user_with_password(f"{name}o", f"{name}-password")
    other = site.login(f"{name}o", f"{name}-password")
    r = other.post(
        f"/users/{name}/details",
        data={"display_name": "hijack", "email": "", "csrf": csrf_of(other.get("/").text)},
    )
    assert r.status_code == 403
    entries = site.call_am(
        "am_repo_db", "query_audit", {"query": {"action": "user.update", "actor": name}}
    )["items"]
    assert entries and entries[0]["actor_login"] == name


def test_an_admin_deletes_an_account_giving_its_repositories_away(site: WebSite, name: str) -> None:
    leaver = site.user_with_password(f"{name}l", f"{name}-password")
    heir = site.user_with_password(f"{name}h", f"{name}-password")
    site.call_am("am_repo_db", "create_repo", {"path": f"{name}l/kept"})
    web = site.admin_client()
    page = web.get(f"/users/{name}l")
    assert 'id="delete-form"' in page.text
    csrf = csrf_of(page.text)
    # Without a new owner: refused, naming the repository; without the typed login: refused.
    r = web.post(f"/users/{name}l/delete", data={"confirm": f"{name}l", "csrf": csrf})
    assert r.status_code == 303 and f"{name}l/kept" in web.get(f"/users/{name}l").text
    r = web.post(
        f"/users/{name}l/delete", data={"confirm": "no", "transfer_to": heir["login"], "csrf": csrf}
    )
    assert site.call_am("am_user_db", "get_user", {"user": leaver["id"]})["login"] == f"{name}l"
    r = web.post(
        f"/users/{name}l/delete",
        data={"confirm": f"{name}l", "transfer_to": heir["login"], "csrf": csrf},
    )
    assert (r.status_code, r.headers["location"]) == (303, "/users")
    repo = site.call_am("am_repo_db", "get_repo", {"repo": f"{name}h/kept"})
    assert repo["full_name"] == f"{name}h/kept"
    assert web.get(f"/users/{name}l").status_code == 404
    # The API: DELETE /api/users/{id}, admins only, never themselves.
    gone = site.user_with_password(f"{name}g", f"{name}-password")
    r = site.client(auth=(f"{name}h", f"{name}-password")).delete(f"/api/users/{gone['id']}")
    assert r.status_code == 403
    r = admin(site).delete(f"/api/users/{site.admin_id}")
    assert r.status_code == 400 and "your own account" in r.json()["message"]
    r = admin(site).delete(f"/api/users/{gone['id']}")
    assert r.status_code == 200 and r.json() == {
        "user": {**r.json()["user"], "login": f"{name}g"},
        "transferred": [],
    }
    assert admin(site).get(f"/api/users/{gone['id']}").status_code == 404


def test_webhooks_over_the_rest_api(site: WebSite, name: str) -> None:
    owner = site.user_with_password(name, f"{name}-password")
    token = site.token_for(owner["id"])
    api = site.client(headers={"authorization": f"Bearer {token}"})
    assert api.post("/api/repos", json={"name": "hooked"}).status_code == 201
    base = f"/api/repos/{name}/hooked/hooks"
    with ThreadedReceiver() as receiver:
        r = api.post(base, json={"url": receiver.url("/ok/api"), "secret": SECRET})
        assert r.status_code == 201, r.text
        hook = r.json()
        assert hook["secret"] == SECRET and hook["events"] == ["push"]
        assert [h["id"] for h in api.get(base).json()] == [hook["id"]]
        assert "secret" not in api.get(f"{base}/{hook['id']}").json()
        assert api.get(f"{base}/{hook['id'].removeprefix('hook-')}").json()["id"] == hook["id"]
        r = api.patch(
            f"{base}/{hook['id']}",
            json={"url": receiver.url("/ok/api2"), "events": ["push", "build_finished"]},
        )
        assert r.status_code == 200 and r.json()["url"] == receiver.url("/ok/api2")
        assert api.patch(f"{base}/{hook['id']}", json={"url": "ftp://x"}).status_code == 400
        assert api.patch(f"{base}/{hook['id']}", json={"nope": 1}).status_code == 422
        test = api.post(f"{base}/{hook['id']}/tests")
        assert test.status_code == 201 and test.json()["event"] == "ping"

        def arrived() -> list:
            return receiver.seen("/ok/api2", "ping")

        (seen,) = wait_until(arrived, what="the test delivery")
        assert seen.headers["x-github-event"] == "ping"
        delivered = wait_until(
            lambda: [
                d
                for d in api.get(f"{base}/{hook['id']}/deliveries").json()
                if d["id"] == test.json()["id"] and d["status"] == "delivered"
            ],
            what="the delivery's log",
        )[0]
        one = api.get(f"{base}/{hook['id']}/deliveries/{delivered['id']}").json()
        assert one["log"][0]["status_code"] == 200 and json.loads(one["body"])["event"] == "ping"
        again = api.post(f"{base}/{hook['id']}/deliveries/{delivered['id']}/redeliver")
        assert again.status_code == 201 and again.json()["redelivery_of"] == delivered["id"]
        # Another repository's hook, or a made-up one, is not here.
        assert api.post("/api/repos", json={"name": "other"}).status_code == 201
        assert api.get(f"/api/repos/{name}/other/hooks/{hook['id']}").status_code == 404
        assert api.get(f"{base}/hook-999999").status_code == 404
        assert api.delete(f"{base}/{hook['id']}").status_code == 204
        assert api.get(base).json() == []
    # Site-wide hooks: site admins only.
    assert api.get("/api/admin/hooks").status_code == 403
    made = admin(site).post("/api/admin/hooks", json={"url": "http://127.0.0.1:9/site"})
    assert made.status_code == 201 and made.json()["repo"] is None
    assert admin(site).delete(f"/api/admin/hooks/{made.json()['id']}").status_code == 204
    doc = site.client().get("/api/openapi.json").json()
    assert "/api/repos/{owner}/{name}/hooks/{hook}/deliveries/{delivery}/redeliver" in doc["paths"]
    assert doc["paths"]["/api/admin/hooks"]["post"]["x-access"] == "admin"


def test_badges_and_build_status_on_commits(site: WebSite, name: str, tmp_path: Path) -> None:
    """A push with build.sh queues a build (no builder runs here): the branch's
    badge and the commit pages show it, for whoever may read the repository."""
    owner = site.add_user(name)
    site.create_repo(f"{name}/app")
    work = tmp_path / "w"
    site.clone(owner, f"{name}/app", work)
    (work / ".applikant").mkdir()
    (work / ".applikant" / "build.sh").write_text("echo hi\n")
    site.git(None, "add", ".applikant", cwd=work)
    commit = site.commit(work, "with a build")
    pushed = site.push(owner, work, "HEAD:refs/heads/main")
    assert f"build {name}/app #1 queued for main" in pushed.stderr
    anon = site.client()
    badge = f"/{name}/app/badge/main.svg"
    assert anon.get(badge).status_code == 404  # private: not even its badge
    web = site.admin_client()
    r = web.get(badge)
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert "no-cache" in r.headers["cache-control"] and "build: queued" in r.text
    assert "no builds" in web.get(f"/{name}/app/badge/other.svg").text
    site.call_am("am_builds", "cancel", {"build": f"{name}/app#1"})
    site.call_am("am_repo_db", "update_repo", {"repo": f"{name}/app", "is_public": True})
    r = anon.get(badge)
    assert r.status_code == 200 and "build: cancelled" in r.text and r.text.startswith("<svg")
    commits = anon.get(f"/{name}/app/commits")
    assert f'href="/{name}/app/builds/1" class="badge status-cancelled"' in commits.text
    page = anon.get(f"/{name}/app/commit/{commit}")
    assert 'id="commit-build"' in page.text and "#1 cancelled" in page.text
