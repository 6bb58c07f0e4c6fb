"""`applikant init`: a new install with a strong cookie and the first admin; never
over an existing one unless forced, and then without losing the database."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from applikant.manager.passwords import Passwords
from applikant.manager.store import Store

pytestmark = pytest.mark.slow  # `applikant init` processes, real password hashing


def init(tmp: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, APPLIKANT_CONFIG=str(tmp / "etc" / "applikant.toml"))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "applikant.cli.main",
            "init",
            "--data-dir",
            str(tmp / "data"),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
    )


def test_init_creates_a_working_install_once(tmp_path: Path) -> None:
    r = init(tmp_path)
    assert r.returncode == 0, r.stderr
    password = r.stdout.split("password: ")[1].split()[0]
    data = tmp_path / "data"
    cookie = data / "cookie"
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o400
    assert len(cookie.read_text().strip()) >= 40
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert (data / "repos").is_dir() and (data / "spool").is_dir()
    config = (tmp_path / "etc" / "applikant.toml").read_text()
    assert f'data_dir = "{data}"' in config and "dev_mode = false" in config
    with Store(str(data / "am.sqlite3"), passwords=Passwords()) as store:
        admin = store.users.verify_password("root", password)
        assert admin is not None and admin.is_admin

    again = init(tmp_path)
    assert again.returncode == 1 and "already set up" in again.stderr
    assert cookie.read_text() == cookie.read_text()

    old_cookie = cookie.read_text()
    forced = init(tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert cookie.read_text() != old_cookie
    assert "password:" not in forced.stdout  # the admin exists: nothing new to show
    with Store(str(data / "am.sqlite3"), passwords=Passwords()) as store:
        assert store.users.verify_password("root", password) is not None  # database kept


def test_init_takes_a_password_from_stdin_and_refuses_bad_input(tmp_path: Path) -> None:
    short = init(tmp_path, "--password-stdin", input="short\n")
    assert short.returncode == 1 and "at least 8" in short.stderr
    reserved = init(tmp_path, "--admin", "admin")
    assert reserved.returncode == 1 and "reserved" in reserved.stderr
    assert not (tmp_path / "data").exists()  # nothing half-made
    bad_user = init(tmp_path, "--user", "no-such-user-here")
    assert bad_user.returncode == 1 and "no user" in bad_user.stderr
    assert not (tmp_path / "data").exists()
    ok = init(tmp_path, "--password-stdin", "--admin", "root-admin", input="long enough pw\n")
    assert ok.returncode == 0, ok.stderr
    assert "password:" not in ok.stdout
    with Store(str(tmp_path / "data" / "am.sqlite3"), passwords=Passwords()) as store:
        assert store.users.verify_password("root-admin", "long enough pw") is not None


def test_dev_setup_rewrites_config_and_cookie_and_keeps_roots_password(
    tmp_path: Path,
) -> None:
    from applikant import config as config_mod
    from applikant.ops.init import dev_setup

    var, config = tmp_path / "var", tmp_path / "var" / "applikant.toml"
    var.mkdir()
    first = dev_setup(var, config, '[aw]\nlisten = "127.0.0.1:18008"\n')
    cookie = var / "cookie"
    first_cookie = cookie.read_text()
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o400
    loaded = config_mod.load(str(config))
    assert loaded.node.dev_mode and loaded.node.host == "localhost"
    assert loaded.aw.listen == "127.0.0.1:18008"
    assert not [p.name for p in var.iterdir() if ".tmp" in p.name]  # no writer leftovers

    assert first is not None
    second = dev_setup(var, config, "")  # the next `make run`: same database
    assert second is None and cookie.read_text() != first_cookie
    with Store(str(var / "am.sqlite3"), passwords=Passwords()) as store:
        admin = store.users.verify_password("root", first)
        assert admin is not None and admin.is_admin
        store.users.set_password("root", "changed in the web UI", actor="user-1")
    assert dev_setup(var, config, "") is None  # a password set since is kept too
    with Store(str(var / "am.sqlite3"), passwords=Passwords()) as store:
        assert store.users.verify_password("root", "changed in the web UI") is not None


def test_init_keeps_a_config_that_names_its_data_dir(tmp_path: Path) -> None:
    """A data dir made anew (restore onto a new data dir, a rebuilt host) keeps
    the operator's edits to the config file."""
    assert init(tmp_path).returncode == 0
    config = tmp_path / "etc" / "applikant.toml"
    config.write_text(config.read_text() + '\n[aw]\nlisten = "0.0.0.0:8080"\n')
    edited = config.read_text()
    shutil.rmtree(tmp_path / "data")
    again = init(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "(kept" in again.stdout and config.read_text() == edited
    assert "sshd_applikant.conf /etc/ssh/sshd_config.d/applikant.conf" in again.stdout  # next steps
    shutil.rmtree(tmp_path / "data")
    elsewhere = subprocess.run(
        [sys.executable, "-m", "applikant.cli.main", "init", "--data-dir", str(tmp_path / "other")],
        env=dict(os.environ, APPLIKANT_CONFIG=str(config)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert elsewhere.returncode == 1 and "names another data dir" in elsewhere.stderr
    assert not (tmp_path / "other").exists() and config.read_text() == edited


def prepare_ab(tmp_path: Path, builder: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "applikant.toml"
    config.write_text(f'[node]\ndata_dir = "{tmp_path / "data"}"\n\n[builder]\n{builder}\n')
    return subprocess.run(
        [sys.executable, "-m", "applikant.cli.main", "prepare-ab"],
        env=dict(os.environ, APPLIKANT_CONFIG=str(config)),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_prepare_ab_makes_the_build_user_of_the_config_and_the_builds_dir(tmp_path: Path) -> None:
    r = prepare_ab(tmp_path, 'build_user = "applikant-build"')
    assert r.returncode == 0, r.stderr
    builds = tmp_path / "data-builds"  # <data_dir>-builds
    assert builds.is_dir() and stat.S_IMODE(builds.stat().st_mode) == 0o711
    assert f"builds directory {builds}" in r.stdout
    if os.geteuid() == 0:
        assert "build user applikant-build" in r.stdout
        missing = prepare_ab(
            tmp_path, 'build_user = "no-such-build-user"\ncreate_build_user = false'
        )
        assert missing.returncode == 1 and "no build user 'no-such-build-user'" in missing.stderr


def test_init_marks_the_repo_root_for_its_cookie_and_re_marks_it_on_the_operators_word(
    tmp_path: Path,
) -> None:
    from applikant.frontend import repostore

    assert init(tmp_path).returncode == 0
    data = tmp_path / "data"
    repos = str(data / "repos")

    def cluster() -> str:
        return repostore.cluster_id(data.joinpath("cookie").read_text().strip().encode())

    marker = repostore.read_marker(repos)
    assert marker is not None and marker.cluster == cluster()
    # --force makes a new cookie: the store it marked follows it (same store id).
    assert init(tmp_path, "--force").returncode == 0
    again = repostore.read_marker(repos)
    assert again is not None and again.cluster == cluster() and again.store == marker.store

    # A root marked by another cluster is left alone unless the operator says so.
    other = repostore.rewrite_marker(repos, "0" * 32, "another cluster")
    refused = init(tmp_path, "--mark-repo-root")
    assert refused.returncode == 1 and "not this cluster" in refused.stderr
    assert repostore.read_marker(repos) == other
    forced = init(tmp_path, "--mark-repo-root", "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"cluster {cluster()}, store {marker.store}" in forced.stdout

    # `make run` makes a new cookie on every start: its marked root follows it.
    from applikant.ops.init import dev_setup

    var = tmp_path / "var"
    (var / "repos").mkdir(parents=True)
    dev_setup(var, var / "applikant.toml", "")
    repostore.write_marker(
        str(var / "repos"),
        repostore.cluster_id((var / "cookie").read_text().strip().encode()),
        "af@localhost",
    )
    store = repostore.read_marker(str(var / "repos"))
    dev_setup(var, var / "applikant.toml", "")
    dev = repostore.read_marker(str(var / "repos"))
    assert dev is not None and store is not None and dev.store == store.store
    assert dev.cluster == repostore.cluster_id((var / "cookie").read_text().strip().encode())
    assert dev.cluster != store.cluster
