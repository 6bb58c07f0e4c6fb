"""`applikant doctor` finds what operators get wrong and says how to fix it, with
the real paths: daemons down (ab included), a cookie others can read, missing
hooks, stale keys, files the service user does not own, and an sshd whose
effective configuration (`sshd -T`) does not read af's keys or allows passwords.
tests/test_install.py runs it on an installed host, where everything is ok."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness.gitenv import GitSite

pytestmark = pytest.mark.slow


def doctor(site: GitSite, *args: str) -> dict[str, dict[str, str]]:
    r = site.cluster.cli("doctor", "--json", *args)
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
        for daemon in ("aw", "ab"):  # this site runs neither
            assert checks[f"{daemon} up"]["status"] == "fail"
            assert f"systemctl start applikant-{daemon}" in checks[f"{daemon} up"]["fix"]
        assert checks["data owner"]["status"] == "ok", checks["data owner"]

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


def test_doctor_on_pushes_not_recorded_and_free_space(tmp_path: Path) -> None:
    from applikant.frontend import spool

    with GitSite(tmp_path) as site:
        checks = doctor(site)
        assert checks["dead letters"]["status"] == "ok"
        assert checks["pushes not recorded yet"]["status"] == "ok"
        reserve = [c for name, c in checks.items() if name.startswith("disk reserve ")]
        assert reserve and all(c["status"] in ("ok", "warn") for c in reserve)
        assert "MiB free of" in reserve[0]["found"] and "(reserve " in reserve[0]["found"]
        # GitSite's sshd is a private one in the data directory, as make run's is
        assert checks["sshd (make run)"]["status"] == "ok", checks["sshd (make run)"]
        assert checks["sshd keys (make run)"]["status"] == "ok"
        assert "sshd snippet" not in checks

        site.stop_af()  # it would deliver (park) the queued junk below
        spool_dir = str(site.spool_dir)
        spool.bury(
            spool_dir,
            "cafe-1",
            {"request": {"env": {"APPLIKANT_REPO": "alice/gone"}, "event_id": "cafe-1"}},
            "not_found: push not recorded: no repository alice/gone",
        )
        old = spool.write(spool_dir, "cafe-2", {"request": {}})
        os.utime(old, (1, 1))
        checks = doctor(site)
        dead = checks["dead letters"]
        assert dead["status"] == "fail"
        assert "1 push(es)" in dead["found"] and "alice/gone: not_found" in dead["found"]
        assert "move the .json file back" in dead["fix"]
        waiting = checks["pushes not recorded yet"]
        assert waiting["status"] == "warn" and "1 event(s) queued" in waiting["found"]


@pytest.mark.skipif(os.geteuid() != 0, reason="sshd -T and chown need root")
def test_doctor_reads_sshds_effective_config_and_names_wrong_owners(tmp_path: Path) -> None:
    with GitSite(tmp_path) as site:
        site.add_user("alice")
        site.create_repo("alice/project")
        config = site.sshd.config_path
        checks = doctor(site, "--sshd-config", str(config))
        assert checks["sshd keys"]["status"] == "ok", checks["sshd keys"]
        assert str(site.keys_file) in checks["sshd keys"]["found"]
        assert checks["sshd keys only"]["status"] == "ok", checks["sshd keys only"]

        # sshd reads another file for the service user, and takes passwords.
        broken = tmp_path / "sshd_config_broken"
        broken.write_text(
            config.read_text()
            .replace(
                f"AuthorizedKeysFile {site.keys_file}", "AuthorizedKeysFile .ssh/authorized_keys"
            )
            .replace("PasswordAuthentication no", "PasswordAuthentication yes")
        )
        checks = doctor(site, "--sshd-config", str(broken))
        keys = checks["sshd keys"]
        assert keys["status"] == "fail" and str(site.keys_file) in keys["found"]
        assert "/etc/ssh/sshd_config.d/applikant.conf" in keys["fix"]
        assert "sshd_applikant.conf" in keys["fix"]
        only = checks["sshd keys only"]
        assert only["status"] == "fail" and "passwordauthentication yes" in only["found"]

        # A file left by root (a restore, a git run as root) in the service user's place.
        repo_config = site.repo_root / "alice" / "project.git" / "config"
        os.chown(repo_config, 65534, 65534)
        owner = doctor(site)["data owner"]
        assert owner["status"] == "fail" and "not owned by root" in owner["found"]
        assert str(repo_config) in owner["found"]
        assert f"chown -R root: {site.tmp}" in owner["fix"]
