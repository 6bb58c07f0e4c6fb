"""Backup while pushes go on, restore onto a fresh data dir: every push that was
acknowledged before the backup began is there, and so are users, keys, grants.
Backups are their owner's only; root backs up and restores for the service user
(here `nobody`); restore replaces a fresh `init`'s database only with --force."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from applikant.frontend.repodisk import RepoDisk
from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Store
from applikant.ops.backup import chown_tree

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ED25519 = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGbPMkEmN8hMJB2s0hq3TqO7sm+2nKp5dW5LbB1tKf8A alice@laptop"
)


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    full.update(
        {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@e",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@e",
            **(env or {}),
        }
    )
    return subprocess.run(
        args, cwd=cwd, env=full, check=True, capture_output=True, text=True
    ).stdout


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "applikant.cli.main", *args],
        env=dict(os.environ, APPLIKANT_CONFIG=str(config)),
        capture_output=True,
        text=True,
        timeout=120,
    )


def install(base: Path) -> Path:
    data = base / "data"
    data.mkdir(parents=True)
    config = base / "applikant.toml"
    config.write_text(f'[node]\ndata_dir = "{data}"\n')
    return config


def test_backup_during_pushes_and_restore(tmp_path: Path) -> None:
    config = install(tmp_path / "old")
    data = tmp_path / "old" / "data"
    with Store(str(data / "am.sqlite3"), passwords=Passwords(fast=True)) as store:
        alice = store.users.add("alice", actor=SYSTEM, password="alice-password")
        bob = store.users.add("bob", actor=SYSTEM)
        key = store.keys.add(alice.id, ED25519, actor=SYSTEM)
        store.repos.create("alice/project", actor=alice.id)
        store.repos.create("alice/empty", actor=alice.id)
        store.access.grant("alice/project", "bob", "write", actor=alice.id)
    disk = RepoDisk(str(data / "repos"), "/bin/true")  # plain local pushes, no policy
    disk.create("alice/project")
    disk.create("alice/empty")
    work = tmp_path / "work"
    run("git", "clone", "-q", disk.path("alice/project"), str(work))
    acked: list[str] = []

    def push(n: int) -> None:
        (work / "f").write_text(str(n))
        run("git", "add", "f", cwd=work)
        run("git", "commit", "-qm", f"c{n}", cwd=work)
        run("git", "push", "-q", "origin", "HEAD:main", cwd=work)
        acked.append(run("git", "rev-parse", "HEAD", cwd=work).strip())

    for n in range(3):
        push(n)
    before = list(acked)
    stop = threading.Event()

    def pusher() -> None:
        n = 100
        while not stop.is_set():
            push(n)
            n += 1

    thread = threading.Thread(target=pusher)
    thread.start()
    try:
        r = cli(config, "backup", str(tmp_path / "backup"))
    finally:
        stop.set()
        thread.join()
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "backup" / "manifest.json").exists()
    assert not list(tmp_path.glob(".backup*"))
    assert_private(tmp_path / "backup")

    new_config = install(tmp_path / "new")
    r = cli(new_config, "restore", str(tmp_path / "backup"))
    assert r.returncode == 0, r.stderr
    new = tmp_path / "new" / "data"
    restored = new / "repos" / "alice" / "project.git"
    for commit in before:  # acknowledged before the backup: all there
        run("git", "cat-file", "-e", f"{commit}^{{commit}}", cwd=restored)
    hook = restored / "hooks" / "pre-receive"
    assert hook.is_symlink() and os.readlink(hook).endswith(".applikant-hook")  # af's layout
    assert os.access(hook, os.X_OK)
    assert (new / "repos" / "alice" / "empty.git").is_dir()
    with Store(str(new / "am.sqlite3"), passwords=Passwords(fast=True)) as store:
        assert store.users.verify_password("alice", "alice-password") is not None
        assert store.keys.find(key.fingerprint) is not None
        assert store.access.check(bob.id, "alice/project", "write").allowed

    again = cli(new_config, "restore", str(tmp_path / "backup"))
    assert again.returncode == 1 and "holds repositories" in again.stderr


def assert_private(backup: Path) -> None:
    """It holds password hashes, webhook secrets and private repositories."""
    for top, _dirs, files in os.walk(backup):
        assert stat.S_IMODE(os.stat(top).st_mode) == 0o700, top
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(top, name)).st_mode) == 0o600, name


def owned_by(path: Path, uid: int) -> list[str]:
    """Everything under `path` (itself included) not owned by `uid`."""
    wrong = []
    for top, dirs, files in os.walk(path):
        for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
            if os.lstat(name).st_uid != uid:
                wrong.append(name)
    return wrong


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_root_backs_up_and_restores_for_the_service_user(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    owner = (nobody.pw_uid, nobody.pw_gid)
    config = install(tmp_path / "old")
    data = tmp_path / "old" / "data"
    with Store(str(data / "am.sqlite3"), passwords=Passwords(fast=True)) as store:
        alice = store.users.add("alice", actor=SYSTEM)
        store.repos.create("alice/project", actor=alice.id)
    disk = RepoDisk(str(data / "repos"), "/bin/true")
    work = tmp_path / "work"
    run("git", "clone", "-q", disk.create("alice/project"), str(work))
    (work / "f").write_text("x")
    run("git", "add", "f", cwd=work)
    run("git", "commit", "-qm", "c", cwd=work)
    run("git", "push", "-q", "origin", "HEAD:main", cwd=work)
    for suffix in ("-wal", "-shm"):  # am stopped: no sidecar files
        Path(f"{data}/am.sqlite3{suffix}").unlink(missing_ok=True)
    chown_tree(data, owner)

    # As root on another user's repositories: git's "dubious ownership" is not hit,
    # and nothing root-owned is left in the data dir.
    r = cli(config, "backup", str(tmp_path / "backup"))
    assert r.returncode == 0, r.stderr
    assert_private(tmp_path / "backup")
    assert owned_by(data, nobody.pw_uid) == []

    # A fresh init (made as `applikant init` does, for nobody), then restore.
    new = tmp_path / "new"
    new.mkdir()
    new_config = new / "applikant.toml"
    env = dict(os.environ, APPLIKANT_CONFIG=str(new_config))
    r = subprocess.run(
        [sys.executable, "-m", "applikant.cli.main", "init", "--data-dir", str(new / "data"),
         "--user", "nobody", "--password-stdin"],
        env=env, input="init-password-1\n", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    stale = Path(f"{new}/data/am.sqlite3-wal")
    stale.write_bytes(b"a stale WAL must not meet the restored db")
    os.chown(stale, *owner)
    refused = cli(new_config, "restore", str(tmp_path / "backup"))
    assert refused.returncode == 1 and "--force" in refused.stderr
    r = cli(new_config, "restore", "--force", str(tmp_path / "backup"))
    assert r.returncode == 0, r.stderr
    assert owned_by(new / "data", nobody.pw_uid) == []  # af and am (as nobody) can write
    kept = sorted(p.name for p in (new / "data").glob("am.sqlite3.before-restore-*"))
    assert len(kept) == 2 and kept[1].endswith("-wal")  # init's database, set aside with its WAL
    with Store(str(new / "data" / "am.sqlite3"), passwords=Passwords(fast=True)) as store:
        assert store.users.get("alice").login == "alice"
    restored = new / "data" / "repos" / "alice" / "project.git"
    assert run(
        "git", "-c", f"safe.directory={restored}", "rev-parse", "main", cwd=restored
    ).strip() == (run("git", "rev-parse", "HEAD", cwd=work).strip())


def test_damaged_or_foreign_backups_are_refused(tmp_path: Path) -> None:
    config = install(tmp_path / "old")
    data = tmp_path / "old" / "data"
    Store(str(data / "am.sqlite3")).close()
    r = cli(config, "backup", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert cli(config, "backup", str(tmp_path / "b")).returncode == 1  # never over a backup
    new_config = install(tmp_path / "new")
    (tmp_path / "b" / "am.sqlite3").write_bytes(b"tampered")
    r = cli(new_config, "restore", str(tmp_path / "b"))
    assert r.returncode == 1 and "checksum" in r.stderr
    assert not (tmp_path / "new" / "data" / "am.sqlite3").exists()
    r = cli(new_config, "restore", str(tmp_path))
    assert r.returncode == 1 and "not an Applikant backup" in r.stderr
    r = cli(config, "backup", str(tmp_path / "no" / "such" / "dir"))
    assert r.returncode == 1 and "does not exist" in r.stderr
