"""Backup while everything runs and pushes go on over SSH; restore onto a fresh
data dir: every push acknowledged before the backup began is there (commits and
audit entries), and so is every user, key and permission."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from applikant.manager.passwords import Passwords
from applikant.manager.store import Store
from harness.gitenv import GitSite

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_backup_during_ssh_pushes_restores_everything_acknowledged(tmp_path: Path) -> None:
    with GitSite(tmp_path / "site") as site:
        alice = site.add_user("alice")
        bob = site.add_user("bob")
        site.create_repo("alice/project")
        site.grant("alice/project", "bob", "write")
        work = tmp_path / "work"
        site.clone(alice, "alice/project", work)
        acked: list[str] = []
        stop = threading.Event()

        def pusher() -> None:
            n = 0
            while not stop.is_set():
                commit = site.commit(work, f"change {n}")
                if site.push(alice, work, check=False).returncode == 0:
                    acked.append(commit)
                n += 1

        thread = threading.Thread(target=pusher)
        thread.start()
        try:
            while len(acked) < 3:
                threading.Event().wait(0.05)
            before = list(acked)
            r = site.cluster.cli("backup", str(tmp_path / "backup"))
        finally:
            stop.set()
            thread.join()
        assert r.returncode == 0, r.stderr
        # Restore writes under the daemons' feet: refused while they run.
        r = site.cluster.cli("restore", "--force", str(tmp_path / "backup"))
        assert r.returncode == 1 and "stop them first" in r.stderr, r.stderr

    new = tmp_path / "new"
    new.mkdir()
    config = new / "applikant.toml"
    config.write_text(f'[node]\ndata_dir = "{new}"\n')
    r = subprocess.run(
        [sys.executable, "-m", "applikant.cli.main", "restore", str(tmp_path / "backup")],
        env=dict(os.environ, APPLIKANT_CONFIG=str(config)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    repo = new / "repos" / "alice" / "project.git"
    for commit in before:
        subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=repo, check=True)
    with Store(str(new / "am.sqlite3"), passwords=Passwords(fast=True)) as store:
        pushed = {
            entry_new
            for e in store.audit.query(action="push", repo="alice/project", limit=1000)
            for entry_new in (ref["new"] for ref in e.details.get("refs", []))
        }
        assert set(before) <= pushed
        assert [k.public_key.split()[1] for k in store.keys.of(alice.id)] == [alice.pub.split()[1]]
        assert store.access.check(bob.id, "alice/project", "write").allowed
        assert store.users.get("bob").login == "bob"
