"""When am is away, aw says so in words (503), and recovers when am is back."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.wait import wait_until
from harness.web import ADMIN_LOGIN, ADMIN_PASSWORD, WebSite

pytestmark = pytest.mark.slow


def test_am_down_gives_503_then_recovers(tmp_path: Path) -> None:
    with WebSite(tmp_path) as site:
        c = site.admin_client()
        api = site.client(auth=(ADMIN_LOGIN, ADMIN_PASSWORD))
        assert c.get("/").status_code == 200
        site.kill_am()
        r = c.get("/")
        assert r.status_code == 503
        assert "manager" in r.text and "Traceback" not in r.text
        r = api.get("/api/repos")
        assert r.status_code == 503 and "manager" in r.json()["message"]
        r = site.client().get("/root/x.git/info/refs", params={"service": "git-upload-pack"})
        assert r.status_code == 503
        site.start_am()
        wait_until(lambda: api.get("/api/repos").status_code == 200, what="aw to reach am again")
        assert c.get("/").status_code == 200
        site.close_clients()
