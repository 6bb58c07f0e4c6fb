"""Private by default on disk: `applikant init` and `make run`'s setup make the
data directory 0700 and am's database 0600; the -wal and -shm am makes while
it runs are 0600 whatever its umask; a database left readable by an older
version is closed up when it is opened."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from applikant.cli.devrun import builder_section
from applikant.manager.passwords import Passwords
from applikant.manager.store import Store
from applikant.ops.init import dev_setup, initialize
from harness.am import Am
from harness.cluster import Cluster


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The umask of a login shell (0022), under which new files are 0644."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_init_makes_the_data_private(tmp_path: Path, loose_umask: None) -> None:
    data = tmp_path / "data"
    result = initialize(tmp_path / "etc" / "applikant.toml", data, fast_hash=True)
    assert mode(data) == 0o700
    assert mode(result.db) == 0o600 and mode(result.cookie_file) == 0o400


def test_make_runs_setup_makes_the_data_private(tmp_path: Path, loose_umask: None) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    (var / "am.sqlite3").touch(mode=0o644)  # left by an older make run
    dev_setup(var, var / "applikant.toml", "")
    assert mode(var) == 0o700
    assert mode(var / "am.sqlite3") == 0o600


def test_a_readable_database_is_closed_up_when_opened(tmp_path: Path, loose_umask: None) -> None:
    db = tmp_path / "am.sqlite3"
    with Store(str(db), passwords=Passwords(fast=True)) as store:
        store.users.add("alice", actor="system")
        for suffix in ("", "-wal", "-shm"):
            os.chmod(f"{db}{suffix}", 0o644)
    assert mode(db) == 0o644
    with Store(str(db), passwords=Passwords(fast=True), read_only=True) as store:
        assert store.users.get("alice").login == "alice"
        for suffix in ("", "-wal", "-shm"):
            assert mode(Path(f"{db}{suffix}")) == 0o600, suffix


@pytest.mark.slow
def test_the_files_am_makes_are_private(tmp_path: Path, loose_umask: None) -> None:
    cluster = Cluster(tmp_path)
    try:
        cluster.start_portmapper()
        am = Am(cluster).start()
        am.users("add_user", actor="system", login="walwriter")
        db = Path(am.db)
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
            assert path.exists() and mode(path) == 0o600, path
        am.stop()
    finally:
        cluster.stop()


def test_make_run_builds_beside_var_or_in_a_fresh_directory(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        assert builder_section(tmp_path / "var") == ""  # builds run as this user
        return
    # pytest's tmp_path is under a 0700 directory of root's: the build user
    # could not enter var-builds beside var/, so the builds go elsewhere.
    section = builder_section(tmp_path / "var")
    root = Path(section.split('builds_root = "')[1].split('"')[0])
    assert root.is_dir() and str(root).startswith(tempfile.gettempdir())
    shutil.rmtree(root)
    checkout = Path(tempfile.mkdtemp())
    try:
        checkout.chmod(0o755)
        assert builder_section(checkout / "var") == ""  # enterable by all: the default
    finally:
        checkout.rmdir()
