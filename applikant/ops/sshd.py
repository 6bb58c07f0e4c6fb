"""A real OpenSSH sshd on a loopback port: `make run`'s private sshd, and the
tests' and benchmarks'.

``SshServer`` is a plain (sync) context manager, so it works from pytest
fixtures, trio tests (start it in a fixture) and ``python -m bench.*`` alike::

    with SshServer(tmp_path) as sshd:
        key, pub = make_client_key(tmp_path)
        sshd.authorized_keys.write_text(pub + "\\n")
        subprocess.run(["git", "ls-remote", sshd.url("/srv/x.git")],
                       env={**os.environ, "GIT_SSH_COMMAND": sshd.ssh_command(key)})

Facts about these machines that it takes care of: sshd is started by its
absolute path and needs ``/run/sshd``; with ``UsePAM no`` an account whose
password field is locked (``!``, as ``useradd`` leaves it) is refused, hence
``usermod -p '*'`` in :func:`ensure_system_user`; git protocol v2 over SSH
needs ``AcceptEnv GIT_PROTOCOL``.

Who logs in: by default the user running the tests (root here, allowed with
keys only), because every file in ``tmp_path`` is then readable by the login.
Pass ``user="applikant-git"`` for the realistic setup; sshd reads
``authorized_keys`` and runs the forced command as that user, so everything
they need must be readable by it (``/tmp/pytest-of-root`` is mode 0700).
"""

from __future__ import annotations

import os
import pwd
import shlex
import socket
import subprocess
import time
from pathlib import Path

from applikant.procs import free_port

__all__ = ["SshServer", "SshdError", "ensure_system_user", "free_port", "make_client_key"]

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
START_TIMEOUT = 10.0


class SshdError(RuntimeError):
    """sshd did not start; the message carries the tail of its log."""


def make_client_key(
    directory: str | os.PathLike[str], type: str = "ed25519", name: str | None = None
) -> tuple[str, str]:
    """Generate a passphrase-less client key in ``directory``: ``(private_key_path, public_key_line)``."""
    priv = Path(directory) / (name or f"id_{type}")
    for p in (priv, priv.with_name(priv.name + ".pub")):
        p.unlink(missing_ok=True)
    extra = ["-b", "2048"] if type == "rsa" else []
    subprocess.run(
        [
            SSH_KEYGEN,
            "-q",
            "-t",
            type,
            *extra,
            "-N",
            "",
            "-C",
            f"test-{priv.name}",
            "-f",
            str(priv),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return str(priv), priv.with_name(priv.name + ".pub").read_text().strip()


def ensure_system_user(name: str = "applikant-git", home: str | None = None) -> pwd.struct_passwd:
    """Make sure a system user ``name`` exists and can log in with a key; needs root.

    Creates it with ``useradd`` (shell ``/bin/sh``, home ``/var/lib/<name>``
    unless given) when missing, and unlocks the password field with
    ``usermod -p '*'`` (no password works, but the account is no longer
    "locked", which sshd without PAM refuses). Safe to call concurrently.
    """
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        home = home or f"/var/lib/{name}"
        proc = subprocess.run(
            [
                "useradd",
                "--system",
                "--create-home",
                "--home-dir",
                home,
                "--shell",
                "/bin/sh",
                name,
            ],
            capture_output=True,
            text=True,
        )
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise RuntimeError(f"useradd {name} failed: {proc.stderr.strip()}") from None
    if _shadow_field(name).startswith("!"):
        subprocess.run(["usermod", "-p", "*", name], check=True, capture_output=True)
    return entry


def _shadow_field(name: str) -> str:
    # Not the spwd module: deprecated, and warnings are errors in our tests.
    with open("/etc/shadow") as f:
        for line in f:
            fields = line.split(":")
            if fields[0] == name:
                return fields[1]
    return ""


class SshServer:
    """sshd on 127.0.0.1 for the life of a ``with`` block; stopped by PID on exit.

    Attributes once entered: ``port``, ``pid``, ``user`` (the login name),
    ``authorized_keys`` (a ``Path``, by default ``<tmp_dir>/authorized_keys``,
    created empty), ``log_path``, ``config_path``, ``host_key``.

    ``extra_config`` is appended to sshd_config (e.g. ``AuthorizedKeysCommand``
    lines). ``extra_keys_files`` are read after ``authorized_keys`` (a file
    af does not rewrite, e.g. for a plain key in benchmarks). With ``port=None`` a free port is chosen, and another one tried if
    it was taken in between.
    """

    def __init__(
        self,
        tmp_dir: str | os.PathLike[str],
        port: int | None = None,
        *,
        user: str | None = None,
        authorized_keys: str | os.PathLike[str] | None = None,
        extra_config: str = "",
        extra_keys_files: tuple[str | os.PathLike[str], ...] = (),
    ) -> None:
        self.dir = Path(tmp_dir).absolute() / "sshd"
        self.requested_port = port
        self.user = user or pwd.getpwuid(os.geteuid()).pw_name
        self.authorized_keys = (
            Path(authorized_keys) if authorized_keys else self.dir / "authorized_keys"
        )
        self.extra_config = extra_config
        self.extra_keys_files = [Path(p) for p in extra_keys_files]
        self.config_path = self.dir / "sshd_config"
        self.log_path = self.dir / "sshd.log"
        self.pid_path = self.dir / "sshd.pid"
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """How the listener ended (None while it runs or before it started)."""
        return self._proc.poll() if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> SshServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start sshd and return once it answers with an SSH banner."""
        self.dir.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation dir
        if not self.host_key.exists():
            subprocess.run(
                [
                    SSH_KEYGEN,
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "applikant-test-host",
                    "-f",
                    str(self.host_key),
                ],
                check=True,
                stdin=subprocess.DEVNULL,
            )
        if not self.authorized_keys.exists():
            self.authorized_keys.parent.mkdir(parents=True, exist_ok=True)
            self.authorized_keys.touch(mode=0o600)
        attempts = 1 if self.requested_port else 5
        for attempt in range(attempts):
            self.port = self.requested_port or free_port()
            try:
                self._start_once()
                return
            except SshdError:
                self.stop()
                if attempt == attempts - 1 or "Bind to port" not in self.log_tail():
                    raise

    def _start_once(self) -> None:
        self.config_path.write_text(self._config())
        self.log_path.write_text("")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            # Own session: a Ctrl-C meant for pytest does not hit sshd first
            # and leave a test half torn down.
            self._proc = subprocess.Popen(
                [SSHD, "-D", "-f", str(self.config_path), "-E", str(self.log_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self._proc.poll() is not None:
                raise SshdError(f"sshd exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self._banner_ok():
                return
            if time.monotonic() > deadline:
                raise SshdError(
                    f"sshd not answering on port {self.port} after {START_TIMEOUT}s:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _banner_ok(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                return s.recv(64).startswith(b"SSH-2.0-")
        except OSError:
            return False

    def stop(self) -> None:
        """Terminate the sshd listener by PID; idempotent.

        Sessions still open keep running in their own sessions (sshd calls
        setsid for each) and end when their clients disconnect.
        """
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _config(self) -> str:
        root_login = "prohibit-password" if self.user == "root" else "no"
        return f"""\
# Written by applikant/ops/sshd.py (make run, tests, benchmarks).
ListenAddress 127.0.0.1
Port {self.port}
HostKey {self.host_key}
PidFile {self.pid_path}
AuthorizedKeysFile {" ".join(str(p) for p in [self.authorized_keys, *self.extra_keys_files])}
AllowUsers {self.user}
PermitRootLogin {root_login}
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AcceptEnv GIT_PROTOCOL
PermitUserEnvironment no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
# The default 10:30:100 drops connections at random beyond 10 unauthenticated
# ones: concurrent-push tests would see spurious failures.
MaxStartups 200
MaxSessions 50
LogLevel VERBOSE
{self.extra_config}
"""

    # -- clients -----------------------------------------------------------------

    def ssh_args(self, key_path: str | os.PathLike[str]) -> list[str]:
        """argv for ``ssh`` to this server, without the destination."""
        return [
            "ssh",
            "-F", "/dev/null",  # no ~/.ssh/config of whoever runs the tests
            "-i", str(key_path),
            "-p", str(self.port),
            "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes",
            "-o", "BatchMode=yes",
            "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=10",
        ]  # fmt: skip

    def ssh_command(self, key_path: str | os.PathLike[str]) -> str:
        """A ``GIT_SSH_COMMAND`` value (git runs it through a shell, hence the quoting)."""
        return shlex.join(self.ssh_args(key_path))

    @property
    def destination(self) -> str:
        return f"{self.user}@127.0.0.1"

    def url(self, path: str) -> str:
        """An scp-style git URL (``user@127.0.0.1:path``); the port comes from :meth:`ssh_command`."""
        return f"{self.destination}:{path}"

    def run(
        self, key_path: str | os.PathLike[str], command: str, *, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """``ssh <server> <command>`` with captured text output; never raises on exit status."""
        return subprocess.run(
            [*self.ssh_args(key_path), self.destination, command],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
