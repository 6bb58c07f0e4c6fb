"""`applikant init`: a new install with a strong cookie and the first admin; never
over an existing one unless forced, and then without losing the database."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from applikant.manager.passwords import Passwords
from applikant.manager.store import Store


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
    assert stat.S_IMODE(data.stat().st_mode) == 0o750
    assert (data / "repos").is_dir() and (data / "spool").is_dir()
    config = (tmp_path / "etc" / "applikant.toml").read_text()
    assert f'data_dir = "{data}"' in config and "dev_mode = false" in config
    with Store(str(data / "am.sqlite3"), passwords=Passwords()) as store:
        admin = store.verify_password("root", password)
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
        assert store.verify_password("root", password) is not None  # database kept


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
        assert store.verify_password("root-admin", "long enough pw") is not None


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
