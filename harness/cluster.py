"""A cluster of real node processes on loopback for tests: a config file, a
portmapper on a free port, nodes started with `python -m ...`, all stopped by PID
when the test ends (also when it fails)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

from applikant import procs
from harness.account import ServiceAccount
from harness.wait import TIMEOUT

COOKIE = "test-cookie-0123456789"


class Cluster:
    def __init__(
        self,
        tmp: Path,
        *,
        tick_time: float = 10.0,
        cookie: str = COOKIE,
        extra_toml: str = "",
        host: str = "localhost",
        account: ServiceAccount | None = None,
        node_toml: str = "",
    ) -> None:
        self.tmp = tmp
        self.account = account
        self.python = account.python if account else sys.executable
        self.host = host
        self.cookie = cookie
        self.pm_port = procs.free_port()
        base = 20000 + (self.pm_port % 400) * 100
        self.config = tmp / "applikant.toml"
        (tmp / "cookie").write_text(cookie)
        os.chmod(tmp / "cookie", 0o600)
        self.config.write_text(
            f'[node]\nhost = "{host}"\ndata_dir = "{tmp}"\ncookie_file = "{tmp / "cookie"}"\n'
            f"dev_mode = true\n{node_toml}\n[dist]\nportmapper_port = {self.pm_port}\n"
            f"listen_min = {base}\nlisten_max = {base + 99}\ntick_time = {float(tick_time)}\n"
            f"handshake_timeout = 2.0\n{extra_toml}"
        )
        self.env = {"APPLIKANT_CONFIG": str(self.config), "PYTHONUNBUFFERED": "1"}
        if account is not None:
            self.env.update(account.env())
        for var in ("APPLIKANT_COOKIE", "APPLIKANT_AM_NODE", "APPLIKANT_AF_NODE"):
            os.environ.pop(var, None)
        self.procs: list[procs.Proc] = []
        self.portmapper: procs.Proc | None = None

    def start_portmapper(self) -> procs.Proc:
        proc = self._spawn(
            [self.python, "-m", "applikant.cli.main", "portmapper", "--port", str(self.pm_port)],
            "portmapper",
        )
        procs.wait_port("127.0.0.1", self.pm_port, timeout=TIMEOUT, proc=proc.popen)
        self.portmapper = proc
        return proc

    def start_node(
        self,
        name: str,
        *globals_: str,
        connect: tuple[str, ...] = (),
        plain: bool = False,
        wait: bool = True,
    ) -> procs.Proc:
        argv = [sys.executable, "-m", "applikant.node.echo", f"{name}@{self.host}"]
        argv += [f"--global={g}" for g in globals_]
        argv += [f"--connect={c}" for c in connect]
        if plain:
            argv.append("--plain")
        proc = self._spawn(argv, name, stdout=subprocess.PIPE)
        if wait:
            line = self.read_line(proc, "READY")
            proc.port = int(line.split()[1])  # type: ignore[attr-defined]
        return proc

    def read_line(self, proc: procs.Proc, prefix: str, timeout: float = TIMEOUT) -> str:
        """The next stdout line of `proc` starting with prefix; AssertionError if none comes."""
        assert proc.popen.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.popen.stdout], [], [], 0.1)
            if ready:
                line = proc.popen.stdout.readline().decode()
                if not line:
                    break
                if line.startswith(prefix):
                    return line.strip()
            elif not proc.alive():
                break
        raise AssertionError(f"no {prefix!r} from {proc.argv}; log:\n{proc.log_text()}")

    def cli(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        input: str | None = None,
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        full = dict(os.environ, **self.env, **(env or {}))
        return subprocess.run(
            [sys.executable, "-m", "applikant.cli.main", *args],
            env=full,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def node(self, name: str) -> str:
        return f"{name}@{self.host}"

    def _spawn(self, argv: list[str], label: str, stdout: int | None = None) -> procs.Proc:
        n = sum(1 for p in self.procs if p.log_path and Path(p.log_path).stem.startswith(label))
        log = str(self.tmp / f"{label}-{n}.log")
        proc = procs.Proc(self.as_account(argv), env=self.env, log_path=log, stdout=stdout)
        self.procs.append(proc)
        return proc

    def as_account(self, argv: list[str]) -> list[str]:
        """`argv` run as the cluster's service account (as it is, without one)."""
        return self.account.argv(argv) if self.account else argv

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
