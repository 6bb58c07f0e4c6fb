"""`applikant doctor` finds what operators get wrong and says how to fix it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.gitenv import GitSite

pytestmark = pytest.mark.slow


def doctor(site: GitSite) -> dict[str, dict[str, str]]:
    r = site.cluster.cli("doctor", "--json")
    assert r.returncode in (0, 1), r.stderr
    return {c["check"]: c for c in json.loads(r.stdout)}


def test_doctor_on_a_running_site_and_after_breaking_it(tmp_path: Path) -> None:
    with GitSite(tmp_path) as site:
        alice = site.add_user("alice")
        site.create_repo("alice/project")
        checks = doctor(site)
        for name in (
            "cookie",
            "portmapper",
            "am up",
            "af up",
            "one cluster",
            "repo root",
            "authorized_keys",
        ):
            assert checks[name]["status"] == "ok", checks[name]
        assert checks["aw up"]["status"] == "fail"  # this site runs no aw
        assert "systemctl start applikant-aw" in checks["aw up"]["fix"]

        cookie = Path(site.cluster.tmp / "cookie")
        os.chmod(cookie, 0o644)
        (site.repo_root / "alice" / "project.git" / "hooks" / "pre-receive").unlink()
        site.keys_file.write_text("# edited by hand\n")
        checks = doctor(site)
        assert checks["cookie"]["status"] == "fail" and "chmod 0400" in checks["cookie"]["fix"]
        assert checks["repo root"]["status"] == "fail"
        assert "alice/project: hook pre-receive is missing" in checks["repo root"]["found"]
        assert checks["authorized_keys"]["status"] == "fail"
        assert "restart af" in checks["authorized_keys"]["fix"]
        text = site.cluster.cli("doctor")
        assert text.returncode == 1 and "fix:" in text.stdout
        assert alice.login == "alice"


def test_doctor_with_nothing_running(tmp_path: Path) -> None:
    with GitSite(tmp_path) as site:
        site.stop()
        checks = doctor(site)
        assert checks["portmapper"]["status"] == "fail"
        assert "applikant-portmapper" in checks["portmapper"]["fix"]
        assert "am up" not in checks  # nothing to ask without a portmapper
