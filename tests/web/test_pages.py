"""Server-rendered pages through a real aw: CSRF, login throttling, browsing,
path traversal, error pages in words."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.web import ADMIN_LOGIN, ADMIN_PASSWORD, WebSite, csrf_of


@pytest.fixture(scope="module")
def browsable(site: WebSite, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A private repo with a README, a subdirectory, a branch with a slash and a tag."""
    owner = site.add_user("pgowner")
    site.call_am("am_user_db", "set_password", {"user": owner.id, "password": "owner-pass-1"})
    site.create_repo("pgowner/code")
    w = tmp_path_factory.mktemp("pg") / "code"
    site.commit(w, "first commit")
    (w / "README.md").write_text(
        "# Hello\n\n<script>alert(1)</script>\n\n[x](javascript:alert(1))\n"
    )
    (w / "src").mkdir()
    (w / "src" / "main.py").write_text("print('hi')\n")
    site.git(None, "add", ".", cwd=w)
    site.git(None, "commit", "-q", "-m", "add readme & src", cwd=w)
    site.git(None, "tag", "v1.0", cwd=w)
    site.git(None, "branch", "feature/x", cwd=w)
    site.git(None, "remote", "add", "origin", site.url("pgowner/code"), cwd=w)
    site.push(owner, w, "HEAD:refs/heads/main", "refs/tags/v1.0", "feature/x:refs/heads/feature/x")
    return {"owner": owner}


def test_form_post_without_csrf_changes_nothing(site: WebSite, name: str) -> None:
    c = site.admin_client()
    for data in ({"login": name}, {"login": name, "csrf": "forged"}):
        r = c.post("/users/new", data=data)
        assert r.status_code == 403
        assert "CSRF" in r.text and "Traceback" not in r.text
    assert (
        site.client(auth=(ADMIN_LOGIN, ADMIN_PASSWORD)).get(f"/api/users/{name}").status_code == 404
    )
    # The same form with the token works.
    token = csrf_of(c.get("/users/new").text)
    assert c.post("/users/new", data={"login": name, "csrf": token}).status_code == 303


def test_logout_needs_csrf_and_ends_the_session(site: WebSite) -> None:
    c = site.admin_client()
    assert c.post("/logout", data={"x": "1"}).status_code == 403
    assert c.get("/").status_code == 200
    token = csrf_of(c.get("/").text)
    assert c.post("/logout", data={"csrf": token}).status_code == 303
    assert c.get("/users").status_code == 303  # to the login page


def test_session_cookie_flags(site: WebSite) -> None:
    c = site.client()
    page = c.get("/login")
    r = c.post(
        "/login",
        data={"login": ADMIN_LOGIN, "password": ADMIN_PASSWORD, "csrf": csrf_of(page.text)},
    )
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert r.headers["x-frame-options"] == "DENY"


def test_repeated_failed_logins_are_slowed_down(site: WebSite, name: str) -> None:
    site.user_with_password(name, "right-password-1")
    c = site.client()
    statuses = []
    for _ in range(7):
        token = csrf_of(c.get("/login").text)
        r = c.post("/login", data={"login": name, "password": "wrong", "csrf": token})
        statuses.append(r.status_code)
    assert statuses[:5] == [401] * 5
    assert statuses[-1] == 429 and "try again" in r.text
    assert int(r.headers["retry-after"]) >= 1
    # Even the right password waits now, for this login.
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"login": name, "password": "right-password-1", "csrf": token})
    assert r.status_code == 429


def test_pages_render_for_an_admin(site: WebSite, browsable: dict) -> None:
    c = site.admin_client()
    for path, text in (
        ("/", "Cluster"),
        ("/repos", "pgowner/code"),
        ("/repos?q=code", "code"),
        ("/users", "pgowner"),
        ("/users/pgowner", "SSH keys"),
        ("/groups", "Groups"),
        ("/audit", "repo.create"),
        ("/audit?action=repo", "repo.create"),
        ("/settings/tokens", "API tokens"),
        ("/repos/new", "New repository"),
    ):
        r = c.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        assert text in r.text, path


def test_repo_browser(site: WebSite, browsable: dict) -> None:
    c = site.login("pgowner", "owner-pass-1")
    r = c.get("/pgowner/code")
    assert r.status_code == 200
    html = r.text
    assert '<h1 id="user-content-hello">' in html and "Hello</h1>" in html
    assert "<script>alert(1)</script>" not in html and 'href="javascript' not in html
    assert (
        f"{site.base}/pgowner/code.git" in html
        and "ssh://git@127.0.0.1:2222/pgowner/code.git" in html
    )
    for needle in ("feature/x", "v1.0", "add readme &amp; src", 'path=src">src</a>'):
        assert needle in html, needle
    r = c.get("/pgowner/code/tree", params={"ref": "feature/x", "path": "src"})
    assert r.status_code == 200 and "main.py" in r.text
    r = c.get("/pgowner/code/blob", params={"ref": "v1.0", "path": "src/main.py"})
    assert r.status_code == 200 and "'hi'</span>" in r.text and 'id="L1"' in r.text
    r = c.get("/pgowner/code/commits", params={"ref": "main"})
    assert r.status_code == 200 and "first commit" in r.text
    assert c.get("/pgowner/code/settings").status_code == 200


@pytest.mark.parametrize(
    "params,status",
    [
        ({"path": "../../../etc/passwd"}, 400),
        ({"path": "/etc/passwd"}, 400),
        ({"path": "src/../../x"}, 400),
        ({"ref": "--output=/tmp/x"}, 400),
        ({"ref": "main", "path": "nope.txt"}, 404),
        ({"ref": "no-such-branch"}, 404),
        ({"ref": "main..HEAD"}, 400),
    ],
)
def test_refused_refs_and_paths(site: WebSite, browsable: dict, params: dict, status: int) -> None:
    c = site.login("pgowner", "owner-pass-1")
    r = c.get("/pgowner/code/blob", params=params)
    assert r.status_code == status, r.text[:300]
    assert "Traceback" not in r.text and "<h1>" in r.text


def test_private_repo_pages_are_hidden(site: WebSite, browsable: dict, name: str) -> None:
    site.user_with_password(name, "other-pass-1")
    c = site.login(name, "other-pass-1")
    for path in ("/pgowner/code", "/pgowner/code/tree?path=src", "/pgowner/code/settings"):
        r = c.get(path)
        assert r.status_code == 404, path
    anon = site.client()
    assert anon.get("/pgowner/code").status_code == 404
    assert "pgowner/code" not in anon.get("/repos").text


def test_settings_need_admin_access(site: WebSite, browsable: dict, name: str) -> None:
    site.user_with_password(name, "reader-pass-1")
    site.grant("pgowner/code", name, "read")
    c = site.login(name, "reader-pass-1")
    assert c.get("/pgowner/code").status_code == 200
    assert c.get("/pgowner/code/settings").status_code == 403
    token = csrf_of(c.get("/pgowner/code").text)
    r = c.post(
        "/pgowner/code/settings",
        data={"csrf": token, "action": "delete", "confirm": "pgowner/code"},
    )
    assert r.status_code == 403
    assert site.call_am("am_repo_db", "get_repo", {"repo": "pgowner/code"})["name"] == "code"


def test_delete_needs_the_typed_confirmation(site: WebSite, name: str) -> None:
    site.create_repo(f"{ADMIN_LOGIN}/{name}", wait=False)
    c = site.admin_client()
    token = csrf_of(c.get(f"/{ADMIN_LOGIN}/{name}/settings").text)
    r = c.post(
        f"/{ADMIN_LOGIN}/{name}/settings",
        data={"csrf": token, "action": "delete", "confirm": "wrong"},
    )
    assert r.status_code == 303
    assert site.call_am("am_repo_db", "get_repo", {"repo": f"{ADMIN_LOGIN}/{name}"})
    r = c.post(
        f"/{ADMIN_LOGIN}/{name}/settings",
        data={"csrf": token, "action": "delete", "confirm": f"{ADMIN_LOGIN}/{name}"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/repos"
    assert c.get(f"/{ADMIN_LOGIN}/{name}").status_code == 404


def test_key_errors_are_explained(site: WebSite, name: str, tmp_path: Path) -> None:
    from harness.sshd import make_client_key

    site.user_with_password(name, "keys-pass-1")
    c = site.login(name, "keys-pass-1")
    page = c.get(f"/users/{name}").text
    token = csrf_of(page)
    r = c.post(f"/users/{name}/keys", data={"csrf": token, "key": "ssh-rsa not-a-key"})
    assert r.status_code == 400 and 'id="key-error"' in r.text
    _, pub = make_client_key(tmp_path, name="k")
    r = c.post(f"/users/{name}/keys", data={"csrf": token, "key": pub, "title": "laptop"})
    assert r.status_code == 303
    page = c.get(f"/users/{name}").text
    assert "SHA256:" in page and "laptop" in page
    r = c.post(f"/users/{name}/keys", data={"csrf": token, "key": pub})
    assert r.status_code == 409 and "key-error" in r.text
    # Someone else's page: not theirs to change.
    r = c.post(f"/users/{ADMIN_LOGIN}/keys", data={"csrf": token, "key": pub})
    assert r.status_code == 403


def test_non_admin_cannot_reach_admin_pages(site: WebSite, name: str) -> None:
    site.user_with_password(name, "plain-pass-1")
    c = site.login(name, "plain-pass-1")
    token = csrf_of(c.get("/").text)
    assert c.get("/audit").status_code == 403
    assert c.get("/users/new").status_code == 403
    assert c.post("/users/new", data={"csrf": token, "login": f"{name}z"}).status_code == 403
    assert c.post("/groups", data={"csrf": token, "name": f"{name}g"}).status_code == 403
    assert (
        c.post(f"/users/{ADMIN_LOGIN}/admin", data={"csrf": token, "action": "disable"}).status_code
        == 403
    )
    assert site.call_am("am_user_db", "get_user", {"user": ADMIN_LOGIN})["disabled"] is False


def test_error_pages_are_words(site: WebSite) -> None:
    c = site.client()
    r = c.get("/no/such/page/here")
    assert r.status_code == 404 and "Not found" in r.text and "Traceback" not in r.text
    r = c.post("/login", content=b"\xff\xfe", headers={"content-type": "multipart/form-data"})
    assert r.status_code in (400, 403) and "Traceback" not in r.text
