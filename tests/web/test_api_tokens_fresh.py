"""A token aw has seen has its reads sent with the token, as the user it stood
for, and am checks the token in the same call (apitable._guessed,
am_user_db.as_token), yet what changed in am takes effect on the very next
request: a revoked token, a disabled account, a lost admin flag, a revoked
grant. Each test first uses the token, so that aw has seen it, then changes
am and asks again at once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

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


@pytest.mark.slow
def test_a_throttled_address_is_throttled_for_a_token_seen_before(tmp_path: Path) -> None:
    """Wrong tokens from an address throttle it: a good token aw has seen is
    held back there as it was before aw saw it (its own site: the address is
    the tests' loopback)."""
    with WebSite(tmp_path) as site:
        _, _, t = _token_client(site, "throttled")
        assert t.get("/api/repos").status_code == 200
        guesser = site.client(headers={"authorization": "Bearer user-1." + "x" * 30})
        codes = [guesser.get("/api/repos").status_code for _ in range(31)]
        assert codes[:30] == [401] * 30 and codes[30] == 429, codes
        r = t.get("/api/repos")
        assert r.status_code == 429 and "retry-after" in r.headers, r.text
