"""A production install on this host, made as the README says, for the end-to-end
install test: `make install` into a directory of its own, a service user made
with the README's `useradd`, `applikant init` from the installed prefix, every
daemon started exactly as its installed unit says (harness/units.py), and a real
sshd configured by `Include` of the installed snippet.

    with InstalledHost(ROOT) as host:
        host.cli("user", "add", "alice")        # BINDIR/applikant, no APPLIKANT_CONFIG
        host.git(key, "clone", host.ssh_url("alice/project"), "w")

Everything lives under one directory under /var/lib (outside /tmp: the units'
PrivateTmp would hide it, and sshd checks the modes of every directory above
authorized_keys); the service and build accounts have unique names. `close()`
(also after a failed start) stops every process by PID, removes both accounts
and the directory.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from applikant import procs
from harness.gitenv import git_env
from harness.sshd import SshServer, make_client_key
from harness.units import Unit, UnitProcess

__all__ = ["UNITS", "InstalledHost"]

#: In the order systemd starts them (After=applikant-portmapper.service).
UNITS = (
    "applikant-portmapper.service",
    "applikant-am.service",
    "applikant-af.service",
    "applikant-aw.service",
    "applikant-ab.service",
)


class InstalledHost:
    def __init__(self, checkout: Path) -> None:
        self.checkout = checkout
        self.base = Path(tempfile.mkdtemp(prefix="applikant-it-", dir="/var/lib"))
        self.base.chmod(0o755)
        tag = self.base.name.rsplit("-", 1)[1].lower()
        self.user = f"akgit{tag}"[:30]
        self.build_user = f"akbld{tag}"[:30]
        self.prefix = self.base / "opt"
        self.bindir = self.base / "bin"
        self.etc = self.base / "etc"
        self.data = self.base / "data"
        self.unitdir = self.base / "units"
        self.run_dir = self.base / "run"  # logs and notify sockets
        self.client = self.base / "client"  # git clients' homes and keys (root's)
        self.config = self.etc / "applikant.toml"
        self.admin_password = ""
        self.aw_port = 0
        self.units: dict[str, UnitProcess] = {}
        self.sshd: SshServer | None = None
        self.users_made: list[str] = []

    @property
    def user_uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    def __enter__(self) -> InstalledHost:
        try:
            self.install()
            self.add_service_user()
            self.init()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- the README's steps ---------------------------------------------------------

    def install(self) -> None:
        variables = {
            "PREFIX": self.prefix,
            "BINDIR": self.bindir,
            "SYSCONFDIR": self.etc,
            "DATADIR": self.data,
            "UNITDIR": self.unitdir,
            "SERVICE_USER": self.user,
        }
        r = subprocess.run(
            ["make", "-s", "install", *(f"{k}={v}" for k, v in variables.items())],
            cwd=self.checkout,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        self.run_dir.mkdir(mode=0o755)
        self.client.mkdir(mode=0o700)

    def add_service_user(self) -> None:
        """`useradd --system --user-group --home-dir DATADIR --shell /bin/sh git`,
        then `usermod -p '*' git` (keys only, not locked)."""
        self.users_made.append(self.user)
        for argv in (
            [
                "useradd",
                "--system",
                "--user-group",
                "--home-dir",
                str(self.data),
                "--shell",
                "/bin/sh",
                self.user,
            ],
            ["usermod", "-p", "*", self.user],
        ):
            subprocess.run(argv, check=True, capture_output=True, timeout=60)

    def init(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`applikant init` from the installed prefix, with no APPLIKANT_CONFIG and
        no --data-dir: the paths come from make install."""
        r = self.cli("init", *args)
        assert r.returncode == 0, r.stdout + r.stderr
        if "password: " in r.stdout:
            self.admin_password = r.stdout.split("password: ")[1].split()[0]
        return r

    def configure_ports(self) -> None:
        """What an operator edits: ports (free ones here) and the build user."""
        pm_port, self.aw_port = procs.free_port(), procs.free_port()
        low = 20000 + (pm_port % 400) * 100
        with open(self.config, "a") as f:
            f.write(
                f"\n[dist]\nportmapper_port = {pm_port}\nlisten_min = {low}\n"
                f'listen_max = {low + 99}\n\n[aw]\nlisten = "127.0.0.1:{self.aw_port}"\n'
                f'\n[builder]\nbuild_user = "{self.build_user}"\nkill_grace = 0.5\n'
            )
        self.users_made.append(self.build_user)  # made by ab's ExecStartPre

    def unit(self, name: str) -> Unit:
        return Unit.read(self.unitdir / name)

    def start(self) -> None:
        for name in UNITS:
            proc = UnitProcess(self.unit(name), self.run_dir)
            self.units[name] = proc
            proc.start()

    def restart(self, name: str) -> None:
        """`systemctl restart NAME`: stop by PID, start again from the unit file."""
        proc = self.units.pop(name)
        proc.stop()
        self.units[name] = UnitProcess(self.unit(name), self.run_dir)
        self.units[name].start()

    def stop_units(self) -> dict[str, int | None]:
        codes = {}
        for name in reversed(UNITS):
            proc = self.units.pop(name, None)
            if proc is not None:
                codes[name] = proc.stop()
        return codes

    def start_sshd(self) -> SshServer:
        self.sshd = SshServer(
            self.base,
            user=self.user,
            extra_config=f"Include {self.etc / 'sshd_applikant.conf'}\n",
        )
        self.sshd.start()
        return self.sshd

    # ---- clients --------------------------------------------------------------------

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """The installed `applikant` (through BINDIR's link), as root, with the
        environment of a login shell: no APPLIKANT_* variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIKANT_", "PYTHON"))}
        return subprocess.run(
            [str(self.bindir / "applikant"), *args],
            env=env,
            capture_output=True,
            text=True,
            input=input,
            timeout=120,
        )

    def add_user(self, login: str, password: str | None = None) -> tuple[str, str]:
        """`applikant user add` (with this password, or none) and `key add` of a
        fresh key: (private key path, public key line)."""
        key, pub = make_client_key(self.client, name=login)
        args = ["--password-stdin"] if password else ["--no-password"]
        r = self.cli("user", "add", login, *args, input=f"{password}\n" if password else None)
        assert r.returncode == 0, r.stderr
        (self.client / f"{login}.pub").write_text(pub + "\n")
        r = self.cli("key", "add", login, str(self.client / f"{login}.pub"))
        assert r.returncode == 0, r.stderr
        return key, pub

    def commit(self, work: Path, files: dict[str, str], message: str) -> str:
        """A commit of `files` (path: text) in the working copy `work`; its id."""
        if not (work / ".git").exists():
            self.git(None, "init", "-q", "-b", "main", str(work))
        for name, text in files.items():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            (work / name).write_text(text)
        self.git(None, "add", ".", cwd=work)
        self.git(None, "commit", "-qm", message, cwd=work)
        return self.git(None, "rev-parse", "HEAD", cwd=work).stdout.strip()

    def git(
        self, key: str | None, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """git as a client (over SSH with `key`); AssertionError on failure if `check`."""
        assert self.sshd is not None
        extra = {"GIT_SSH_COMMAND": self.sshd.ssh_command(key)} if key else {}
        r = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=git_env(self.client, **extra),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0 or not check, f"git {' '.join(args)}: {r.stderr}"
        return r

    def ssh_url(self, repo: str) -> str:
        return f"{self.user}@127.0.0.1:{repo}.git"

    def http_url(self, repo: str, login: str = "", password: str = "") -> str:
        auth = f"{login}:{password}@" if login else ""
        return f"http://{auth}127.0.0.1:{self.aw_port}/{repo}.git"

    def logs(self) -> str:
        parts = [
            f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.run_dir.glob("*.log"))
        ]
        if self.sshd is not None:
            parts.append(f"== sshd\n{self.sshd.log_tail()}")
        return "\n".join(parts)

    # ---- cleanup --------------------------------------------------------------------

    def close(self) -> None:
        try:
            self.stop_units()
        finally:
            if self.sshd is not None:
                self.sshd.stop()
            for user in self.users_made:
                _end_processes_of(user)
                subprocess.run(["userdel", user], capture_output=True, timeout=60)
                subprocess.run(["groupdel", user], capture_output=True, timeout=60)
            shutil.rmtree(self.base, ignore_errors=True)


def _end_processes_of(user: str, timeout: float = 15.0) -> None:
    """Wait for the processes of an account this test made (sshd sessions end on
    their own); what is left after `timeout` was started by this test: killed."""
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return
    deadline = time.monotonic() + timeout
    while True:
        pids = [
            int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _uid_of(entry) == uid
        ]
        if not pids:
            return
        if time.monotonic() > deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return
        time.sleep(0.1)


def _uid_of(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None
