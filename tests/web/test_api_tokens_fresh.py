"""A token's reads start before the token is checked (apitable._guessed), yet
what changed in am takes effect on the very next request: a revoked token, a
disabled account, a lost admin flag, a revoked grant. Each test first uses the
token, so that aw has seen it (the case that reads ahead), then changes am
and asks again at once."""

from __future__ import annotations

import httpx

from harness.web import WebSite


def _token_client(site: WebSite, login: str, **fields: object) -> tuple[dict, dict, httpx.Client]:
    user = site.user_with_password(login, f"{login}-password-1", **fields)
    made = site.call_am(
        "am_user_db", "create_token", {"actor": "system", "user": user["id"], "title": "t"}
    )
    client = site.client(headers={"authorization": f"Bearer {made['token']}"})
    return user, made, client


def test_a_revoked_token_is_refused_on_the_next_read(site: WebSite, name: str) -> None:
    _, made, t = _token_client(site, name)
    site.create_repo(f"{name}/secret", is_public=False)
    for _ in range(2):  # seen, then read ahead
        assert t.get("/api/repos").status_code == 200
        assert t.get(f"/api/repos/{name}/secret").status_code == 200
    site.call_am("am_user_db", "revoke_token", {"actor": "system", "token": made["id"]})
    for path in ("/api/repos", f"/api/repos/{name}/secret", "/api/user"):
        r = t.get(path)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["message"] == "the API token is unknown or revoked"


def test_a_disabled_account_is_refused_on_the_next_read(site: WebSite, name: str) -> None:
    user, _, t = _token_client(site, name)
    assert t.get("/api/user").json()["id"] == user["id"]
    site.call_am("am_user_db", "disable_user", {"actor": "system", "user": user["id"]})
    assert t.get("/api/user").status_code == 401
    assert t.get("/api/repos").status_code == 401
    site.call_am("am_user_db", "enable_user", {"actor": "system", "user": user["id"]})
    assert t.get("/api/user").status_code == 200


def test_a_lost_admin_flag_counts_on_the_next_read(site: WebSite, name: str) -> None:
    user, _, t = _token_client(site, name, is_admin=True)
    for _ in range(2):
        assert t.get("/api/audit", params={"limit": 1}).status_code == 200
        assert t.get("/api/user").json()["is_admin"] is True
    site.call_am(
        "am_user_db", "set_admin", {"actor": "system", "user": user["id"], "is_admin": False}
    )
    r = t.get("/api/audit", params={"limit": 1})
    assert r.status_code == 403, r.text
    assert t.get("/api/user").json()["is_admin"] is False


def test_a_revoked_grant_counts_on_the_next_read(site: WebSite, name: str) -> None:
    owner = site.add_user(f"{name}o", with_key=False)
    repo = f"{owner.login}/shared"
    site.create_repo(repo, is_public=False)
    reader, _, t = _token_client(site, name)
    site.call_am(
        "am_repo_db",
        "grant",
        {"actor": "system", "repo": repo, "grantee": reader["id"], "level": "read"},
    )
    for _ in range(2):
        assert t.get(f"/api/repos/{repo}").status_code == 200
        assert repo in [r["full_name"] for r in t.get("/api/repos", params={"q": "shared"}).json()]
    site.call_am("am_repo_db", "revoke", {"actor": "system", "repo": repo, "grantee": reader["id"]})
    assert t.get(f"/api/repos/{repo}").status_code == 404
    assert repo not in [r["full_name"] for r in t.get("/api/repos", params={"q": "shared"}).json()]


def test_a_token_and_a_wrong_login_are_refused_after_a_good_read(site: WebSite, name: str) -> None:
    _, made, t = _token_client(site, name)
    assert t.get("/api/user").status_code == 200
    other = site.client(auth=("someone-else", made["token"]))
    r = other.get("/api/user")
    assert r.status_code == 401 and "another user" in r.json()["message"]
