"""One repository, one directory, one name: a symlink in the repository root
(`bob/alias.git -> ../alice/secret.git`) serves nothing over SSH, HTTP or the
pages; `ALICE/Secret` reads and pushes `alice/secret` the same way over SSH,
HTTP and the web UI; and the dashboard's counts are what the viewer may read."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from harness.gitenv import git_env
from harness.web import ADMIN_LOGIN, ADMIN_PASSWORD, WebSite

pytestmark = pytest.mark.slow


def http_clone(site: WebSite, url: str, dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "clone", "-q", url, str(dest)],
        env=git_env(site.home, GIT_TERMINAL_PROMPT="0"),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_a_symlinked_repository_serves_nothing(site: WebSite, name: str, tmp_path: Path) -> None:
    alice, bob = site.add_user(f"{name}a"), site.add_user(f"{name}b")
    site.call_am("am_user_db", "set_password", {"user": bob.id, "password": "bob-pass-12"})
    secret, alias = f"{alice.login}/secret", f"{bob.login}/alias"
    site.create_repo(secret)
    work = tmp_path / "w"
    site.commit(work, "alice's secret")
    site.git(None, "remote", "add", "origin", site.url(secret), cwd=work)
    site.push(alice, work)
    site.create_repo(alias)
    # Someone with the git account's rights swaps bob's directory for a link.
    alias_dir = site.repo_root / f"{alias}.git"
    shutil.rmtree(alias_dir)
    alias_dir.symlink_to(Path("..") / alice.login / "secret.git")

    over_ssh = site.clone(bob, alias, tmp_path / "ssh", check=False)
    assert over_ssh.returncode != 0
    assert "not available" in over_ssh.stderr and "secret" not in over_ssh.stderr
    assert not (tmp_path / "ssh").exists()
    url = site.base.replace("http://", f"http://{bob.login}:bob-pass-12@") + f"/{alias}.git"
    over_http = http_clone(site, url, tmp_path / "http")
    assert over_http.returncode != 0 and not (tmp_path / "http").exists()
    page = site.login(bob.login, "bob-pass-12").get(f"/{alias}")
    assert page.status_code == 404 and "alice's secret" not in page.text
    # alice's own repository is served as before.
    assert site.clone(alice, secret, tmp_path / "own").returncode == 0


def test_a_name_in_other_case_reads_and_pushes_the_canonical_repository(
    site: WebSite, name: str, tmp_path: Path
) -> None:
    owner = site.add_user(f"{name}o")
    site.call_am("am_user_db", "set_password", {"user": owner.id, "password": "owner-pass-1"})
    canonical = f"{owner.login}/Project"
    site.create_repo(canonical)
    shouted = f"{owner.login.upper()}/PROJECT"
    work = tmp_path / "w"
    site.commit(work, "first")
    site.git(None, "remote", "add", "origin", site.url(shouted), cwd=work)
    pushed = site.push(owner, work)
    assert "hook" not in pushed.stderr.lower(), pushed.stderr
    assert site.head(canonical) is not None
    [entry] = site.pushes(canonical)  # recorded under the one name
    assert entry["repo"] == canonical
    assert site.clone(owner, shouted, tmp_path / "ssh").returncode == 0
    url = site.base.replace("http://", f"http://{owner.login}:owner-pass-1@") + f"/{shouted}.git"
    assert http_clone(site, url, tmp_path / "http").returncode == 0
    assert (tmp_path / "http" / ".git").is_dir()
    page = site.login(owner.login, "owner-pass-1").get(f"/{shouted}")
    assert page.status_code == 200 and canonical in page.text
    assert not (site.repo_root / f"{shouted}.git").exists()  # no second directory


def test_counts_are_what_the_viewer_may_read(site: WebSite, name: str) -> None:
    site.user_with_password(f"{name}c", f"{name}-pass-1")
    viewer = site.client(auth=(f"{name}c", f"{name}-pass-1"))
    counts = viewer.get("/api/counts").json()
    assert counts["push_denials"] is None and counts["access_denials"] is None
    listed = viewer.get("/api/repos", params={"limit": "100"})
    assert "link" not in listed.headers and counts["repos"] == len(listed.json())
    assert counts["keys"] == 0
    admin = httpx.get(f"{site.base}/api/counts", auth=(ADMIN_LOGIN, ADMIN_PASSWORD)).json()
    assert isinstance(admin["access_denials"], int) and admin["repos"] >= counts["repos"]
    assert admin["keys"] >= 1


def test_metrics_through_a_proxy_are_refused(site: WebSite) -> None:
    """A proxy in front, trusted or not, says so with a forwarding header."""
    assert httpx.get(f"{site.base}/metrics").status_code == 200  # a local scraper
    for header in ("x-forwarded-for", "forwarded", "x-real-ip"):
        r = httpx.get(f"{site.base}/metrics", headers={header: "203.0.113.5"})
        assert r.status_code == 403, header
