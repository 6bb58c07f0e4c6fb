"""The whole suite on loopback for aw's tests: portmapper, am, af, sshd (GitSite)
and aw itself as a real process on a free port, plus an httpx client per user.

    with WebSite(tmp_path) as site:
        admin = site.admin_client()         # logged in through the login form
        admin.get("/api/repos")

Everything is started by this harness and stopped by PID when the block ends.
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from applikant import procs
from harness.gitenv import GitSite

ADMIN_LOGIN = "root"
ADMIN_PASSWORD = "root-password-123"


class WebSite(GitSite):
    """GitSite plus aw; `base` is aw's URL."""

    def __init__(self, tmp: Path, extra_toml: str = "", **kwargs) -> None:
        self.http_port = procs.free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        aw = (
            f'\n[aw]\nlisten = "127.0.0.1:{self.http_port}"\nssh_url = "ssh://git@127.0.0.1:2222"\n'
        )
        super().__init__(tmp, af_toml=aw + extra_toml, **kwargs)
        self.aw_proc: procs.Proc | None = None
        self.admin_id = ""
        self._clients: list[httpx.Client] = []

    def stop(self) -> None:
        self.close_clients()
        super().stop()

    def start(self) -> None:
        super().start()
        self.start_aw()
        admin = self.call_am(
            "am_user_db",
            "add_user",
            {"login": ADMIN_LOGIN, "password": ADMIN_PASSWORD, "is_admin": True},
        )
        self.admin_id = admin["id"]

    def start_aw(self) -> None:
        self.aw_proc = self._daemon(
            "aw", [self.cluster.python, "-m", "applikant.cli.main", "start", "aw"]
        )

    def aw_log(self) -> str:
        return self.aw_proc.log_text() if self.aw_proc else ""

    # ---- clients ------------------------------------------------------------------

    def client(self, **kwargs) -> httpx.Client:
        """An httpx client for aw; closed by `close_clients` (after each test)."""
        c = httpx.Client(base_url=self.base, timeout=30, follow_redirects=False, **kwargs)
        self._clients.append(c)
        return c

    def close_clients(self) -> None:
        while self._clients:
            self._clients.pop().close()

    def login(self, login: str, password: str) -> httpx.Client:
        """A client with a logged-in session; AssertionError if the login fails."""
        c = self.client()
        page = c.get("/login")
        r = c.post(
            "/login",
            data={"login": login, "password": password, "next": "/", "csrf": csrf_of(page.text)},
        )
        assert r.status_code == 303, (r.status_code, r.text[:500])
        return c

    def admin_client(self) -> httpx.Client:
        return self.login(ADMIN_LOGIN, ADMIN_PASSWORD)

    def token_for(
        self, user_id: str, password_client: httpx.Client | None = None, title: str = "test"
    ) -> str:
        """A fresh API token for `user_id`, created by the admin over the API."""
        c = password_client or self.client(auth=(ADMIN_LOGIN, ADMIN_PASSWORD))
        r = c.post(f"/api/users/{user_id}/tokens", json={"title": title})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def user_with_password(self, login: str, password: str, **fields) -> dict:
        return self.call_am(
            "am_user_db", "add_user", {"login": login, "password": password, **fields}
        )


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no CSRF field on the page"
    return m.group(1)
