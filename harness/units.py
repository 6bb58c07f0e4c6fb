"""Installed systemd units, run as systemd would run them, on hosts where
systemd is not PID 1 (containers, CI): for the end-to-end install test.

    unit = Unit.read(Path("/etc/systemd/system/applikant-am.service"))
    assert unit_problems(unit) == []
    with UnitProcess(unit, workdir) as proc:   # ExecStartPre, ExecStart, READY=1
        ...

What a unit's [Service] says is done, not approximated:

| directive | how |
|---|---|
| ExecStartPre, ExecStart | run in order; `+` (full privileges, no sandbox) and `-` (failure ignored) honoured |
| User, Group | `setpriv --reuid --regid --init-groups`; USER, LOGNAME, HOME, SHELL from passwd |
| Environment | the whole environment is systemd's: PATH, the above, NOTIFY_SOCKET, STATE_DIRECTORY and these |
| UMask, WorkingDirectory | set before exec (WorkingDirectory defaults to /) |
| StateDirectory(Mode) | made under /var/lib, owned by User:Group (recursively when its owner differs, as systemd does) |
| ProtectSystem=strict, ReadWritePaths | a private mount namespace: every mount read-only but /proc, /sys, /dev; each path bound read-write; a missing one fails the start (226/NAMESPACE) unless `-`-prefixed |
| PrivateTmp, ProtectHome | fresh tmpfs on /tmp and /var/tmp; /home, /root, /run/user empty and unreadable |
| ProtectProc, ProcSubset | a /proc of our own mounted with hidepid= and subset= |
| NoNewPrivileges, CapabilityBoundingSet | `setpriv --nnp --bounding-set` |
| Type=notify | READY=1 awaited on a NOTIFY_SOCKET of our own |

The rest of the sandbox (system-call filters, address families, kernel
tunables, devices) needs systemd itself; those directives are listed in
SANDBOX_ONLY and checked by `systemd-analyze verify` and `security` instead. A
directive in neither list makes `Unit.read` fail: a new one must be looked at.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.notify import NotifySocket

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EMULATED = {
    "Type",
    "NotifyAccess",
    "ExecStartPre",
    "ExecStart",
    "Environment",
    "User",
    "Group",
    "UMask",
    "WorkingDirectory",
    "StateDirectory",
    "StateDirectoryMode",
    "ProtectSystem",
    "ReadWritePaths",
    "PrivateTmp",
    "ProtectHome",
    "ProtectProc",
    "ProcSubset",
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "AmbientCapabilities",
    "TimeoutStopSec",
}
SANDBOX_ONLY = {
    "Restart",
    "RestartSec",
    "KillMode",
    "PrivateDevices",
    "PrivateMounts",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "RestrictAddressFamilies",
    "RestrictNamespaces",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "RemoveIPC",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallErrorNumber",
}
# Mounts ProtectSystem=strict leaves writable (the API file systems).
API_MOUNTS = ("/proc", "/sys", "/dev")


class UnitError(RuntimeError):
    """The unit could not be started as systemd would; the message says why."""


@dataclass
class Unit:
    path: Path
    sections: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Unit:
        """Parse a unit file: repeated keys accumulate, an empty value resets."""
        unit = cls(path)
        section: dict[str, list[str]] = {}
        pending = ""
        for raw in path.read_text().splitlines():
            line = pending + raw.strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                section = unit.sections.setdefault(line[1:-1], {})
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise UnitError(f"{path}: not a key=value line: {line!r}")
            values = section.setdefault(key.strip(), [])
            if value.strip():
                values.append(value.strip())
            else:
                values.clear()
        unknown = set(unit.sections.get("Service", {})) - EMULATED - SANDBOX_ONLY
        if unknown:
            raise UnitError(f"{path}: directives this launcher does not know: {sorted(unknown)}")
        return unit

    @property
    def name(self) -> str:
        return self.path.name

    def get(self, key: str, default: str = "", section: str = "Service") -> str:
        values = self.sections.get(section, {}).get(key, [])
        return values[-1] if values else default

    def all(self, key: str, section: str = "Service") -> list[str]:
        """Every word of every value of a list directive (ReadWritePaths, ...)."""
        return [w for v in self.sections.get(section, {}).get(key, []) for w in shlex.split(v)]

    def lines(self, key: str, section: str = "Service") -> list[str]:
        return list(self.sections.get(section, {}).get(key, []))

    def yes(self, key: str) -> bool:
        return self.get(key).lower() in ("yes", "true", "1", "on")

    @property
    def state_directories(self) -> list[Path]:
        return [Path("/var/lib") / d for d in self.all("StateDirectory")]


def unit_problems(unit: Unit) -> list[str]:
    """What in the unit does not match this host: missing users, programs,
    config file, writable paths (outside StateDirectory, which systemd makes)."""
    problems = []
    user, group = unit.get("User", "root"), unit.get("Group", "")
    try:
        pwd.getpwnam(user)
    except KeyError:
        problems.append(f"User={user} does not exist")
    if group:
        try:
            grp.getgrnam(group)
        except KeyError:
            problems.append(f"Group={group} does not exist")
    for line in unit.lines("ExecStartPre") + unit.lines("ExecStart"):
        program = shlex.split(line.lstrip("+-@:!"))[0]
        if not os.access(program, os.X_OK):
            problems.append(f"{program} (in {line!r}) is not executable")
    for key, value in _environment(unit).items():
        if key == "APPLIKANT_CONFIG" and not os.path.isfile(value):
            problems.append(f"APPLIKANT_CONFIG={value} does not exist")
    made = unit.state_directories
    for path in unit.all("ReadWritePaths"):
        optional = path.startswith("-")
        path = path.lstrip("-")
        if not optional and not os.path.exists(path) and Path(path) not in made:
            problems.append(
                f"ReadWritePaths={path} does not exist (systemd fails with 226/NAMESPACE)"
            )
    return problems


def _environment(unit: Unit) -> dict[str, str]:
    env = {}
    for line in unit.lines("Environment"):
        for word in shlex.split(line):
            key, _, value = word.partition("=")
            env[key] = value
    return env


def _mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return [
        p.encode().decode("unicode_escape")
        for p in dict.fromkeys(points)
        if not any(p == a or p.startswith(a + "/") for a in API_MOUNTS)
    ]


class UnitProcess:
    """One unit's processes, started as systemd would (see the module docstring);
    `stop()` sends SIGTERM to the main process by PID and waits TimeoutStopSec."""

    def __init__(self, unit: Unit, workdir: Path) -> None:
        self.unit = unit
        self.workdir = workdir
        self.log_path = workdir / f"{unit.name}.log"
        self.popen: subprocess.Popen[bytes] | None = None
        self.notify: NotifySocket | None = None

    def __enter__(self) -> UnitProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what systemd sets up -----------------------------------------------------

    def _account(self) -> tuple[pwd.struct_passwd, int]:
        user = pwd.getpwnam(self.unit.get("User", "root"))
        group = self.unit.get("Group")
        return user, grp.getgrnam(group).gr_gid if group else user.pw_gid

    def _env(self, notify: str | None) -> dict[str, str]:
        user, _ = self._account()
        env = {
            "PATH": DEFAULT_PATH,
            "USER": user.pw_name,
            "LOGNAME": user.pw_name,
            "HOME": user.pw_dir,
            "SHELL": user.pw_shell,
            "INVOCATION_ID": os.urandom(16).hex(),
        }
        if notify:
            env["NOTIFY_SOCKET"] = notify
        if self.unit.state_directories:
            env["STATE_DIRECTORY"] = ":".join(map(str, self.unit.state_directories))
        env.update(_environment(self.unit))
        return env

    def _make_state_directories(self) -> None:
        user, gid = self._account()
        mode = int(self.unit.get("StateDirectoryMode", "0755"), 8)
        for path in self.unit.state_directories:
            path.mkdir(parents=True, exist_ok=True)
            os.chmod(path, mode)
            st = path.stat()
            if (st.st_uid, st.st_gid) != (user.pw_uid, gid):
                for top, dirs, files in os.walk(path):
                    for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
                        os.lchown(name, user.pw_uid, gid)

    def _sandbox_script(self) -> str:
        """Shell lines run as root inside the new mount namespace, then exec."""
        u = self.unit
        q = shlex.quote
        lines = ["set -e"]
        fresh = []
        if u.yes("PrivateTmp"):
            for d in ("/tmp", "/var/tmp"):
                lines.append(f"mount -t tmpfs -o mode=1777 tmpfs {d}")
                fresh.append(d)
        if u.get("ProtectHome") in ("yes", "true"):
            for d in ("/home", "/root", "/run/user"):
                if os.path.isdir(d):
                    lines.append(f"mount -t tmpfs -o ro,mode=000 tmpfs {d}")
                    fresh.append(d)
        if u.get("ProtectSystem") == "strict":
            for point in _mountpoints():
                if point not in fresh:
                    lines.append(
                        f"mount -o remount,bind,ro {q(point)} 2>/dev/null || [ {q(point)} != / ]"
                    )
        elif u.get("ProtectSystem"):
            raise UnitError(f"{u.name}: ProtectSystem={u.get('ProtectSystem')} is not emulated")
        for path in u.all("ReadWritePaths"):
            optional = path.startswith("-")
            path = path.lstrip("-")
            if os.path.exists(path) or not optional:
                lines.append(
                    f"[ -e {q(path)} ] || {{ echo '{u.name}: ReadWritePaths={path} does not "
                    f"exist: 226/NAMESPACE' >&2; exit 226; }}"
                )
                lines.append(f"mount --bind {q(path)} {q(path)}")
                lines.append(f"mount -o remount,bind,rw {q(path)}")
        proc_opts = []
        if u.get("ProtectProc"):
            proc_opts.append(f"hidepid={u.get('ProtectProc')}")
        if u.get("ProcSubset"):
            proc_opts.append(f"subset={u.get('ProcSubset')}")
        if proc_opts:
            lines.append(f"mount -t proc -o {','.join(proc_opts)} proc /proc")
        return "\n".join(lines) + '\nexec "$@"'

    def _setpriv(self) -> list[str]:
        user, gid = self._account()
        argv = ["setpriv"]
        if user.pw_uid != 0:
            argv += [f"--reuid={user.pw_uid}", f"--regid={gid}", "--init-groups"]
        if self.unit.yes("NoNewPrivileges"):
            argv.append("--nnp")
        if "CapabilityBoundingSet" in self.unit.sections.get("Service", {}):
            caps = self.unit.all("CapabilityBoundingSet")
            argv.append(
                "--bounding-set=" + ",".join(["-all", *(f"+{c.lower()[4:]}" for c in caps)])
            )
        return [*argv, "--"]

    def _spawn(self, command: str, notify: str | None) -> subprocess.Popen[bytes]:
        full = command.startswith("+")
        argv = shlex.split(command.lstrip("+-@:!"))
        if not full:
            argv = [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-c",
                self._sandbox_script(),
                "sh",
                *self._setpriv(),
                *argv,
            ]
        with open(self.log_path, "ab") as log:
            return subprocess.Popen(
                argv,
                env=self._env(notify),
                cwd=self.unit.get("WorkingDirectory", "/"),
                umask=int(self.unit.get("UMask", "0022"), 8),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )

    # ---- lifecycle ----------------------------------------------------------------

    def start(self, ready_timeout: float = 90.0) -> None:
        """ExecStartPre lines to completion, then ExecStart until READY=1 (Type=notify)."""
        self._make_state_directories()
        for command in self.unit.lines("ExecStartPre"):
            code = self._spawn(command, None).wait(timeout=120)
            prefix = command[: len(command) - len(command.lstrip("+-@:!"))]
            if code != 0 and "-" not in prefix:
                raise UnitError(
                    f"{self.unit.name}: ExecStartPre {command!r} exited with {code}:\n"
                    + self.log_text()
                )
        if self.unit.get("Type") == "notify":
            sock_dir = self.workdir / self.unit.name
            sock_dir.mkdir(exist_ok=True)
            self.notify = NotifySocket(sock_dir)
            os.chmod(self.notify.path, 0o777)  # as systemd's: any service user may write
        try:
            (command,) = self.unit.lines("ExecStart")
            self.popen = self._spawn(command, self.notify.path if self.notify else None)
            if self.notify:
                self._wait_ready(self.notify, ready_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, notify: NotifySocket, timeout: float) -> None:
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while not any("READY=1" in m.splitlines() for m in notify.messages):
            if self.popen.poll() is not None:
                raise UnitError(
                    f"{self.unit.name} exited with {self.popen.returncode} before READY=1:\n"
                    + self.log_text()
                )
            if time.monotonic() > deadline:
                raise UnitError(f"{self.unit.name}: no READY=1 in {timeout} s:\n{self.log_text()}")
            try:
                notify.wait_for("READY=1", timeout=0.5)
            except AssertionError:
                pass

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> int | None:
        """SIGTERM to the main process, SIGKILL after TimeoutStopSec; its exit code."""
        popen, self.popen = self.popen, None
        code = None
        if popen is not None:
            if popen.poll() is None:
                popen.send_signal(signal.SIGTERM)
                try:
                    popen.wait(timeout=float(self.unit.get("TimeoutStopSec", "90")))
                except subprocess.TimeoutExpired:
                    popen.kill()
                    popen.wait()
            code = popen.returncode
        if self.notify is not None:
            self.notify.close()
            os.unlink(self.notify.path)
            self.notify = None
        return code

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""
