"""The main flows in headless Chromium (Debian's), against the real suite:
log in, create a repository, add a user and their SSH key, grant write, push
over SSH as that user, and see the push on the dashboard and the commit in the
repository view. Screenshots of the main pages go to tests/artifacts/ (not in git).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.browser import chromium, has_chromium, shot
from harness.sshd import make_client_key
from harness.web import ADMIN_LOGIN, ADMIN_PASSWORD, WebSite

pytestmark = pytest.mark.skipif(not has_chromium(), reason="needs Debian's chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b


def test_admin_flow_in_the_browser(site: WebSite, browser, tmp_path: Path) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    base = site.base

    # Log in.
    page.goto(f"{base}/login")
    shot(page, "login")
    page.fill("input[name=login]", ADMIN_LOGIN)
    page.fill("input[name=password]", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
    assert page.locator("h1").inner_text() == "Dashboard"

    # Add a user.
    page.goto(f"{base}/users/new")
    page.fill("input[name=login]", "brdev")
    page.fill("input[name=display_name]", "Browser Dev")
    page.fill("input[name=password]", "brdev-password-1")
    page.click("form.stack button[type=submit]")
    page.wait_for_url(f"{base}/users/brdev")

    # Their SSH key (added by the admin on their page).
    key, pub = make_client_key(tmp_path, name="brdev")
    page.fill("#key-form input[name=title]", "laptop")
    page.fill("#key-form textarea[name=key]", pub)
    page.click("#key-form button[type=submit]")
    page.wait_for_url(f"{base}/users/brdev")
    assert "SHA256:" in page.locator("#keys").inner_text()
    shot(page, "user")

    # A repository, with write for the new user.
    page.goto(f"{base}/repos/new")
    page.select_option("select[name=owner]", ADMIN_LOGIN)
    page.fill("input[name=name]", "webapp")
    page.fill("textarea[name=description]", "made in the browser")
    page.click("form.stack button[type=submit]")
    page.wait_for_url(f"{base}/{ADMIN_LOGIN}/webapp")
    shot(page, "repo-empty")
    page.goto(f"{base}/{ADMIN_LOGIN}/webapp/settings")
    page.fill("#grant-form input[name=grantee]", "brdev")
    page.select_option("#grant-form select[name=level]", "write")
    page.click("#grant-form button[type=submit]")
    page.wait_for_url(f"{base}/{ADMIN_LOGIN}/webapp/settings")
    assert "brdev" in page.locator("#grants").inner_text()
    shot(page, "repo-settings")

    # brdev pushes over SSH (af picks the key up from am).
    from harness.gitenv import User
    from harness.wait import wait_until

    user = User("brdev", "", key, pub)
    blob = pub.split()[1]
    wait_until(lambda: blob in site.keys_file.read_text(), what="brdev's key in authorized_keys")
    wait_until(
        lambda: (site.repo_root / ADMIN_LOGIN / "webapp.git" / "HEAD").exists(),
        what="the repository on disk",
    )
    work = tmp_path / "work"
    site.commit(work, "first from the browser test")
    (work / "README.md").write_text("# Webapp\n\nPushed over **SSH**.\n")
    site.git(None, "add", "README.md", cwd=work)
    site.git(None, "commit", "-q", "-m", "Add the README", cwd=work)
    site.git(None, "remote", "add", "origin", site.url(f"{ADMIN_LOGIN}/webapp"), cwd=work)
    site.push(user, work)

    # The push on the dashboard, the commit in the repository view.
    page.goto(f"{base}/")
    wait_until(
        lambda: page.reload() or f"{ADMIN_LOGIN}/webapp" in page.locator("#pushes").inner_text(),
        what="the push on the dashboard",
    )
    assert "up" in page.locator("#cluster").inner_text()
    shot(page, "dashboard")
    page.goto(f"{base}/{ADMIN_LOGIN}/webapp")
    assert "Add the README" in page.locator("#commits").inner_text()
    assert "Pushed over" in page.locator("#readme").inner_text()
    shot(page, "repo")
    page.goto(f"{base}/repos")
    shot(page, "repos")
    page.goto(f"{base}/audit")
    assert "push" in page.locator("#audit").inner_text()
    shot(page, "audit")
    page.goto(f"{base}/users")
    shot(page, "users")
    ctx.close()
