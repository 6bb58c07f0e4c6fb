"""`make install` gives a host that works as the README says.

- The wheel carries every file the package reads at run time (templates, static).
- `make install` puts the venv under PREFIX, links its commands into BINDIR,
  writes units and the sshd snippet with the real paths, records the paths for
  `applikant init`, and leaves nothing in the checkout; DESTDIR stages it.
- End to end (slow, root): a service user, `applikant init`, every daemon run as
  its installed unit says, an sshd configured from the installed snippet; SSH
  push and clone, HTTP clone, web login, a build as the configured build user,
  doctor; then backup as root and restore onto a fresh `init`.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.installed import UNITS, InstalledHost
from harness.wait import wait_until
from harness.web import csrf_of

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"@[A-Z_]+@")


def make_install(**variables: str) -> None:
    args = [f"{k}={v}" for k, v in variables.items()]
    r = subprocess.run(
        ["make", "-s", "install", *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def checkout_state() -> set[str]:
    """Every path in the checkout but the venv and caches: what an install may not add to."""
    skip = {".venv", ".git", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis"}
    found = set()
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and d != "__pycache__"]
        found.update(os.path.relpath(os.path.join(top, n), ROOT) for n in dirs + files)
    return found


def package_files() -> set[str]:
    """What the package holds in the checkout, but Python's own caches."""
    return {
        os.path.relpath(os.path.join(top, name), ROOT)
        for top, dirs, files in os.walk(ROOT / "applikant")
        if "__pycache__" not in top
        for name in files
        if not name.endswith(".pyc")
    }


def test_wheel_carries_every_file_the_package_reads(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(
        ROOT / "applikant", src / "applikant", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path / "out"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    (wheel,) = (tmp_path / "out").glob("applikant-*.whl")
    in_wheel = {n for n in zipfile.ZipFile(wheel).namelist() if n.startswith("applikant/")}
    expected = package_files()
    assert {"applikant/web/static/style.css", "applikant/web/templates/base.html"} <= expected
    assert expected - in_wheel == set()


def test_install_into_a_prefix_runs_and_leaves_the_checkout_alone(tmp_path: Path) -> None:
    before = checkout_state()
    prefix, bindir, etc = tmp_path / "opt", tmp_path / "bin", tmp_path / "etc"
    make_install(
        PREFIX=str(prefix),
        BINDIR=str(bindir),
        UNITDIR=str(tmp_path / "units"),
        SYSCONFDIR=str(etc),
        DATADIR=str(tmp_path / "data"),
        SERVICE_USER="svc",
    )
    assert checkout_state() == before  # no build/, no *.egg-info, no _paths.py
    for script in ("applikant", "applikant-as", "applikant-ah", "applikant-keys-for"):
        assert (prefix / "bin" / script).exists(), script
        assert os.readlink(bindir / script) == str(prefix / "bin" / script)
    r = subprocess.run([str(bindir / "applikant"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "portmapper" in r.stdout
    r = subprocess.run(
        [str(bindir / "applikant-as")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 1 and r.stderr.startswith("applikant: ")
    # af's default forced command (this Python -S as_launch.py) runs the installed as.
    forced = subprocess.run(
        [str(prefix / "bin" / "python"), "-c",
         "from applikant.frontend.daemon import default_as_command as c; print(c())"],
        capture_output=True, text=True, cwd="/", env={"PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    argv = forced.stdout.split()
    assert argv[:2] == [str(prefix / "bin" / "python"), "-S"], forced.stderr
    r = subprocess.run(
        [*argv, "root"], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}
    )
    assert r.returncode == 1 and "misconfigured forced command" in r.stderr, r.stderr
    # The paths given to make install are the installed package's defaults.
    paths = subprocess.run(
        [str(prefix / "bin" / "python"), "-c", "from applikant import installpaths as p; "
         "print(p.CONFIG, p.DATA_DIR, p.SERVICE_USER, p.INSTALLED)"],
        capture_output=True, text=True, cwd="/",
    )  # fmt: skip
    assert paths.stdout.split() == [
        str(etc / "applikant.toml"),
        str(tmp_path / "data"),
        "svc",
        "True",
    ]
    unit = (tmp_path / "units" / "applikant-am.service").read_text()
    assert f"ExecStart={prefix}/bin/applikant start am" in unit
    assert f"APPLIKANT_CONFIG={etc}/applikant.toml" in unit
    assert "StateDirectory=" not in unit  # DATADIR is not under /var/lib: init makes it
    assert (etc / "applikant.toml.example").exists()
    snippet = (etc / "sshd_applikant.conf").read_text()
    assert not PLACEHOLDER.search(snippet)  # every placeholder filled
    assert "Match User svc" in snippet
    assert f"AuthorizedKeysFile {tmp_path}/data/.ssh/authorized_keys" in snippet
    assert (
        f"#AuthorizedKeysCommand {prefix}/bin/applikant-keys-for --config {etc}/applikant.toml"
        in snippet
    )
    assert "/usr/bin/applikant" not in snippet


def test_destdir_stages_with_the_final_paths(tmp_path: Path) -> None:
    stage = tmp_path / "stage"
    make_install(DESTDIR=str(stage), PREFIX="/opt/applikant")
    bindir = stage / "opt" / "applikant" / "bin"
    assert (bindir / "applikant").read_text().splitlines()[0] == "#!/opt/applikant/bin/python"
    assert (
        os.readlink(stage / "usr" / "local" / "bin" / "applikant") == "/opt/applikant/bin/applikant"
    )
    leaks = subprocess.run(
        ["grep", "-rlI", str(stage), str(bindir), str(stage / "opt" / "applikant" / "pyvenv.cfg"),
         str(stage / "etc")],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert leaks.stdout == ""  # no staging path left in scripts, the venv's config, etc
    unit = (stage / "etc" / "systemd" / "system" / "applikant-af.service").read_text()
    assert "ExecStart=/opt/applikant/bin/applikant start af" in unit
    assert "StateDirectory=applikant\n" in unit  # DATADIR=/var/lib/applikant
    assert not PLACEHOLDER.search(unit)  # every placeholder filled
    snippet = (stage / "etc" / "applikant" / "sshd_applikant.conf").read_text()
    assert "AuthorizedKeysFile /var/lib/applikant/.ssh/authorized_keys" in snippet


# ---- end to end ---------------------------------------------------------------------


def _mount_namespaces() -> bool:
    return (
        os.geteuid() == 0
        and subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "true"], capture_output=True
        ).returncode
        == 0
    )


needs_root = pytest.mark.skipif(
    not _mount_namespaces(),
    reason="the install test makes accounts and mount namespaces: needs root and unshare --mount",
)


@pytest.fixture(scope="module")
def host() -> Iterator[InstalledHost]:
    with InstalledHost(ROOT) as h:
        h.configure_ports()
        h.start()
        h.start_sshd()
        yield h


@pytest.fixture
def installed(host: InstalledHost) -> Iterator[InstalledHost]:
    """The host, and its daemons' and sshd's logs, which pytest shows when the test failed."""
    yield host
    print(host.logs())


def check_units_against_the_host(host: InstalledHost) -> None:
    """Without systemd as PID 1: every directive that names something on this
    host names something that exists (or may be missing), and `systemd-analyze
    verify` accepts the installed files."""
    from harness.units import unit_problems

    for name in UNITS:
        unit = host.unit(name)
        assert unit_problems(unit) == [], name
        for state in unit.state_directories:  # made by systemd: it must be DATADIR
            assert state == host.data, (name, state)
        assert unit.get("User") in (host.user, "root")
        assert "network-online.target" in unit.get("After", section="Unit"), name
    assert host.unit("applikant-ab.service").all("ReadWritePaths") == [f"-{host.data}-builds"]
    if shutil.which("systemd-analyze"):
        for name in [*UNITS, "applikant.target"]:
            r = subprocess.run(
                ["systemd-analyze", "verify", str(host.unitdir / name)],
                capture_output=True,
                text=True,
                cwd=host.unitdir,
            )
            assert r.returncode == 0, (name, r.stderr)
            assert "applikant" not in r.stderr, (name, r.stderr)


@needs_root
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_installed_host_serves_ssh_http_web_and_builds(installed: InstalledHost) -> None:
    run_end_to_end(installed)


def check_processes_run_as_their_units_say(host: InstalledHost) -> None:
    """Seen from /proc: each daemon's uid, gid, umask, no_new_privs and a
    read-only root with its ReadWritePaths writable."""
    for name, proc in host.units.items():
        assert proc.popen is not None and proc.alive(), name
        status = dict(
            line.split(":\t", 1)
            for line in Path(f"/proc/{proc.popen.pid}/status").read_text().splitlines()
        )
        unit = proc.unit
        user = pwd.getpwnam(unit.get("User"))
        assert status["Uid"].split()[:2] == [str(user.pw_uid)] * 2, name
        assert status["Gid"].split()[0] == str(grp.getgrnam(unit.get("Group")).gr_gid), name
        assert status["Umask"].strip() == unit.get("UMask"), name
        assert status["NoNewPrivs"].strip() == "1", name
        mounts = {
            line.split()[4]: line.split()[5].split(",")[0]
            for line in Path(f"/proc/{proc.popen.pid}/mountinfo").read_text().splitlines()
        }
        assert mounts["/"] == "ro", name
        for path in unit.all("ReadWritePaths"):
            assert mounts[path.lstrip("-")] == "rw", (name, path)


def run_end_to_end(host: InstalledHost) -> None:
    check_units_against_the_host(host)
    check_processes_run_as_their_units_say(host)
    assert Path(f"{host.data}-builds").is_dir()  # made by ab's ExecStartPre
    for path in (host.data, host.data / "cookie", host.data / "am.sqlite3", host.data / "repos"):
        assert path.stat().st_uid == host.user_uid, path

    key, pub = host.add_user("alice", password="alice-password-1")
    assert host.cli("repo", "create", "alice/project").returncode == 0
    keys = host.data / ".ssh" / "authorized_keys"
    wait_until(lambda: pub.split()[1] in keys.read_text(), timeout=60, what="af writes the key")

    # SSH push through the installed snippet, with a build script.
    work = host.client / "work"
    build_sh = 'echo "built by $(id -un) in $PWD"\n'
    commit = host.commit(work, {".applikant/build.sh": build_sh}, "first")
    pushed = host.git(key, "push", host.ssh_url("alice/project"), "HEAD:main", cwd=work).stderr
    assert "build alice/project #1 queued for main" in pushed
    host.git(key, "clone", "-q", host.ssh_url("alice/project"), str(host.client / "ssh-clone"))
    assert (
        host.git(None, "rev-parse", "HEAD", cwd=host.client / "ssh-clone").stdout.strip() == commit
    )

    # HTTP clone from aw (private repo: the owner's password).
    url = host.http_url("alice/project", "alice", "alice-password-1")
    host.git(None, "clone", "-q", url, str(host.client / "http-clone"))
    assert (
        host.git(None, "rev-parse", "HEAD", cwd=host.client / "http-clone").stdout.strip() == commit
    )

    # A web login as the admin `applikant init` printed.
    with httpx.Client(base_url=f"http://127.0.0.1:{host.aw_port}", timeout=30) as web:
        page = web.get("/login")
        assert page.status_code == 200, page.text[:300]
        assert web.get("/static/style.css").status_code == 200  # package data installed
        r = web.post(
            "/login",
            data={"login": "root", "password": host.admin_password, "next": "/",
                  "csrf": csrf_of(page.text)},
        )  # fmt: skip
        assert r.status_code == 303, r.text[:300]
        assert "alice/project" in web.get("/alice/project").text

    # The build ran as the build user of [builder], and succeeded.
    def finished() -> dict | None:
        builds = json.loads(host.cli("build", "list", "--json").stdout)
        return builds[0] if builds and builds[0]["status"] not in ("queued", "running") else None

    build = wait_until(finished, timeout=180, what="the build to end", every=0.5)
    log = host.cli("build", "log", str(build["id"])).stdout
    assert build["status"] == "succeeded", log
    assert f"built by {host.build_user} in {host.data}-builds/" in log

    # doctor, from the installed prefix, against this sshd: all well.
    assert host.sshd is not None
    checks = doctor_checks(host, str(host.sshd.config_path))
    bad = {k: c for k, c in checks.items() if c["status"] not in ("ok", "skip")}
    assert bad == {}, bad
    for name in ("am up", "af up", "aw up", "ab up", "data owner", "sshd keys", "service account"):
        assert checks[name]["status"] == "ok", checks[name]
    check_doctor_on_a_broken_account(host, key)


def check_doctor_on_a_broken_account(host: InstalledHost, key: str) -> None:
    """What `useradd` leaves (a locked account; this sshd runs without PAM) and a
    nologin shell: logins fail, and doctor says so with the fix."""
    assert host.sshd is not None
    sshd_config = str(host.sshd.config_path)
    ls_remote = ["ls-remote", host.ssh_url("alice/project")]
    try:
        subprocess.run(["usermod", "-L", host.user], check=True, capture_output=True)
        assert host.git(key, *ls_remote, check=False).returncode != 0
        account = doctor_checks(host, sshd_config)["service account"]
        assert account["status"] == "fail" and "locked" in account["found"]
        assert account["fix"] == f"usermod -p '*' {host.user}"
        subprocess.run(["usermod", "-p", "*", host.user], check=True, capture_output=True)
        subprocess.run(["usermod", "-s", "/usr/sbin/nologin", host.user], check=True)
        assert host.git(key, *ls_remote, check=False).returncode != 0
        account = doctor_checks(host, sshd_config)["service account"]
        assert account["status"] == "fail" and account["fix"] == f"usermod -s /bin/sh {host.user}"
    finally:
        subprocess.run(["usermod", "-p", "*", "-s", "/bin/sh", host.user], check=True)
    host.git(key, *ls_remote)


def doctor_checks(host: InstalledHost, sshd_config: str) -> dict[str, dict[str, str]]:
    r = host.cli("doctor", "--json", "--sshd-config", sshd_config)
    return {c["check"]: c for c in json.loads(r.stdout)}


@needs_root
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_backup_as_root_and_restore_onto_a_fresh_init(
    installed: InstalledHost, tmp_path: Path
) -> None:
    run_backup_restore(installed, tmp_path)


def run_backup_restore(host: InstalledHost, tmp_path: Path) -> None:
    key, pub = host.add_user("bob")
    assert host.cli("repo", "create", "bob/notes").returncode == 0
    keys = host.data / ".ssh" / "authorized_keys"
    wait_until(lambda: pub.split()[1] in keys.read_text(), timeout=60, what="af writes the key")
    work = host.client / "notes"
    commit = host.commit(work, {"README": "notes\n"}, "notes")
    host.git(key, "push", host.ssh_url("bob/notes"), "HEAD:main", cwd=work)

    # Backup as root, while everything runs: only root can read it.
    dest = tmp_path / "backup"
    r = host.cli("backup", str(dest))
    assert r.returncode == 0, r.stderr
    for top, _dirs, files in os.walk(dest):
        assert stat.S_IMODE(os.stat(top).st_mode) == 0o700, top
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(top, name)).st_mode) == 0o600, name
    assert all(p.stat().st_uid == host.user_uid for p in host.data.iterdir()), (
        "backup as root left root's files in the data dir"
    )

    # Restore as the README says: stop, a fresh data dir and init, restore --force, start.
    host.stop_units()
    r = host.cli("restore", str(dest))
    assert r.returncode == 1 and "holds repositories" in r.stderr  # never over live data
    shutil.rmtree(host.data)
    host.init()  # keeps the config file (with its ports): it names this data dir
    r = host.cli("restore", str(dest))
    assert r.returncode == 1 and "--force" in r.stderr  # init's database is not replaced silently
    r = host.cli("restore", "--force", str(dest))
    assert r.returncode == 0, r.stderr
    assert list(host.data.glob("am.sqlite3.before-restore-*"))  # init's database, kept
    r = host.cli(
        "doctor", "--json", "--sshd-config", str(host.sshd.config_path if host.sshd else "")
    )
    owner = {c["check"]: c for c in json.loads(r.stdout)}["data owner"]
    assert owner["status"] == "ok", owner  # restored as root, owned by the service user
    host.start()
    wait_until(lambda: pub.split()[1] in keys.read_text(), timeout=60, what="af rebuilds the keys")
    clone = host.client / "restored"
    host.git(key, "clone", "-q", host.ssh_url("bob/notes"), str(clone))
    assert host.git(None, "rev-parse", "HEAD", cwd=clone).stdout.strip() == commit
    host.commit(clone, {"more": "more\n"}, "after restore")
    host.git(key, "push", "origin", "HEAD:main", cwd=clone)  # af and am can write again


@needs_root
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_keys_command_mode_through_the_installed_snippet(installed: InstalledHost) -> None:
    """The snippet's second way, switched on as it says: sshd runs the installed
    applikant-keys-for (a root-owned path, as sshd demands) as the service user.
    Runs last: it leaves the host in command mode."""
    run_keys_command_mode(installed)


def run_keys_command_mode(host: InstalledHost) -> None:
    assert host.sshd is not None
    snippet = host.etc / "sshd_applikant.conf"
    snippet.write_text(
        snippet.read_text()
        .replace("    AuthorizedKeysFile ", "    #AuthorizedKeysFile ")
        .replace("    #AuthorizedKeysFile none", "    AuthorizedKeysFile none")
        .replace("    #AuthorizedKeysCommand", "    AuthorizedKeysCommand")
    )
    with open(host.config, "a") as f:
        f.write('\n[af]\nkeys_mode = "command"\n')
    host.restart("applikant-af.service")
    host.sshd.stop()
    host.start_sshd()
    (host.data / ".ssh" / "authorized_keys").write_text("")  # not what sshd reads now

    key, _ = host.add_user("carol")
    assert host.cli("repo", "create", "carol/tools").returncode == 0
    wait_until(
        lambda: (
            host.git(key, "ls-remote", host.ssh_url("carol/tools"), check=False).returncode == 0
        ),
        timeout=60,
        what="a login through AuthorizedKeysCommand",
        every=0.5,
    )
    keys = doctor_checks(host, str(host.sshd.config_path))["sshd keys"]
    assert keys["status"] == "ok" and f"{host.prefix}/bin/applikant-keys-for" in keys["found"]
