"""What aw caches never shows a stale page: a push shows at once on every code
page (refs are read fresh, the long-lived cat-file sees new objects), and
access follows grants on the very next request (decisions are never cached,
even when aw asks am about them while the session is being resolved)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from harness.gitenv import User
from harness.web import WebSite, csrf_of


def _pages(repo: str) -> dict[str, str]:
    return {
        "tree": f"/{repo}",
        "blob": f"/{repo}/blob?path=notes.txt",
        "raw": f"/{repo}/raw?path=notes.txt",
        "history": f"/{repo}/commits?path=notes.txt",
        "blame": f"/{repo}/blame?path=notes.txt",
        "archive": f"/{repo}/archive/main.tar.gz",
    }


def _setup(site: WebSite, name: str, tmp_path: Path) -> tuple[str, Path, User]:
    owner = site.add_user(f"{name}o")
    repo = f"{owner.login}/code"
    site.create_repo(repo, is_public=False)
    work = tmp_path / "work"
    site.git(None, "init", "-q", "-b", "main", str(work))
    (work / "notes.txt").write_text("first words\n")
    site.git(None, "add", ".", cwd=work)
    site.git(None, "commit", "-q", "-m", "first", cwd=work)
    site.git(None, "remote", "add", "origin", site.url(repo), cwd=work)
    site.push(owner, work)
    return repo, work, owner


def test_a_push_shows_at_once_on_warm_pages(site: WebSite, name: str, tmp_path: Path) -> None:
    repo, work, owner = _setup(site, name, tmp_path)
    admin = site.admin_client()
    for _ in range(2):  # cold, then warm: everything cacheable is cached now
        for page, path in _pages(repo).items():
            r = admin.get(path)
            assert r.status_code == 200, (page, r.text[:300])
    assert "first words" in admin.get(f"/{repo}/raw?path=notes.txt").text
    first = site.git(None, "rev-parse", "HEAD", cwd=work).stdout.strip()
    assert admin.get(f"/{repo}/compare/{first}...main").status_code == 200
    (work / "notes.txt").write_text("second words\n")
    site.git(None, "commit", "-q", "-am", "the second commit", cwd=work)
    new = site.git(None, "rev-parse", "HEAD", cwd=work).stdout.strip()
    site.push(owner, work)
    assert "the second commit" in admin.get(f"/{repo}").text
    assert "second words" in admin.get(f"/{repo}/blob?path=notes.txt").text
    assert admin.get(f"/{repo}/raw?path=notes.txt").text == "second words\n"
    history = admin.get(f"/{repo}/commits?path=notes.txt").text
    assert f"/{repo}/commit/{new}" in history
    assert new[:10] in admin.get(f"/{repo}/blame?path=notes.txt").text
    assert f"/{repo}/commit/{new}" in admin.get(f"/{repo}/compare/{first}...main").text


def test_access_follows_grants_on_the_next_request(
    site: WebSite, name: str, tmp_path: Path
) -> None:
    repo, _work, _owner = _setup(site, name, tmp_path)
    reader = f"{name}r"
    site.user_with_password(reader, "reader-pass-1")
    c = site.login(reader, "reader-pass-1")

    def statuses() -> dict[str, int]:
        return {page: c.get(path).status_code for page, path in _pages(repo).items()}

    assert set(statuses().values()) == {404}
    site.grant(repo, reader, "read")
    assert set(statuses().values()) == {200}
    assert set(statuses().values()) == {200}  # aw now knows whom the session stands for
    site.call_am("am_repo_db", "revoke", {"repo": repo, "grantee": reader})
    assert set(statuses().values()) == {404}
    site.grant(repo, reader, "read")
    assert set(statuses().values()) == {200}
    # The session ends: the same cookie is anonymous now, and gets 404.
    token = csrf_of(c.get("/").text)
    old_cookie = dict(c.cookies)
    assert c.post("/logout", data={"csrf": token}).status_code == 303
    stale = httpx.Client(base_url=site.base, cookies=old_cookie)
    try:
        for path in _pages(repo).values():
            r = stale.get(path)
            assert r.status_code == 404, (path, r.status_code)
            assert not re.search(r"first words", r.text)
    finally:
        stale.close()
