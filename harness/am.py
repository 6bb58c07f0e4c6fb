"""am as a real process for the service tests: `applikant start am` on a real
SQLite file (or a PostgreSQL database), in a Cluster (config, portmapper), called through ephemeral nodes
(applikant.node.blocking) or the admin CLI. Stopped by PID at the end."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from applikant import envconfig, procs
from applikant.node import blocking
from applikant.node.errors import DistError, RemoteError
from harness.cluster import Cluster
from harness.wait import TIMEOUT, wait_until

SLOW_GIT = """#!{python}
import os, sys, time
delay_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "delay")
try:
    time.sleep(float(open(delay_file).read() or 0))
except OSError:
    pass
os.execv({git!r}, ["git", *sys.argv[1:]])
"""


class Am:
    """One am daemon and the means to call it."""

    def __init__(self, cluster: Cluster, slow_git: bool = False, db: str | None = None) -> None:
        self.cluster = cluster
        self.node = cluster.node("am")
        if db is not None:  # a PostgreSQL URL (harness/postgres.py), or another file
            with open(cluster.config, "a", encoding="utf-8") as f:
                f.write(f'\n[am]\ndb = "{db}"\nlease_timeout = 5.0\n')
        raw = envconfig.load_raw(str(cluster.config))
        self.cookie = envconfig.cookie(raw)
        self.settings = envconfig.dist_settings(raw)
        self.db = db or str(cluster.tmp / "am.sqlite3")
        self.env = dict(cluster.env)
        self.git_delay_file: Path | None = None
        if slow_git:
            # A `git` first on am's PATH that sleeps as long as the file says.
            bindir = cluster.tmp / "slowgit"
            bindir.mkdir(exist_ok=True)
            real = "/usr/bin/git" if os.path.exists("/usr/bin/git") else "git"
            script = bindir / "git"
            script.write_text(SLOW_GIT.format(python=sys.executable, git=real))
            script.chmod(0o755)
            self.git_delay_file = bindir / "delay"
            self.git_delay_file.write_text("0")
            self.env["PATH"] = f"{bindir}:{os.environ.get('PATH', '')}"
        self.proc: procs.Proc | None = None

    def set_git_delay(self, seconds: float) -> None:
        assert self.git_delay_file is not None
        self.git_delay_file.write_text(str(seconds))

    def start(self, timeout: float = TIMEOUT) -> Am:
        n = sum(1 for p in self.cluster.procs if p.argv[-2:] == ["start", "am"])
        self.proc = procs.Proc(
            [sys.executable, "-m", "applikant.cli.main", "start", "am"],
            env=self.env,
            log_path=str(self.cluster.tmp / f"am-{n}.log"),
        )
        self.cluster.procs.append(self.proc)
        proc = self.proc

        def up() -> bool:
            try:
                self.call("am_repo_db", "counts", {})
                return True
            except DistError:
                if not proc.alive():
                    raise AssertionError(f"am exited; log:\n{proc.log_text()}") from None
                return False

        try:
            wait_until(up, timeout, "am to answer", every=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; log:\n{proc.log_text()}") from None
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown, no checkpoint."""
        assert self.proc is not None
        self.proc.signal(signal.SIGKILL)
        self.proc.popen.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def log_text(self) -> str:
        return self.proc.log_text() if self.proc else ""

    def call(self, service: str, method: str, args: Any = None, timeout: float = 10.0) -> Any:
        return blocking.call(
            self.node,
            self.cookie,
            service,
            method,
            args,
            settings=self.settings,
            timeout=timeout,
            prefix="test",
        )

    def users(self, method: str, **args: Any) -> Any:
        return self.call("am_user_db", method, args)

    def repos(self, method: str, **args: Any) -> Any:
        return self.call("am_repo_db", method, args)

    def error(self, service: str, method: str, args: Any) -> RemoteError:
        """The RemoteError a call must fail with."""
        try:
            result = self.call(service, method, args)
        except RemoteError as exc:
            return exc
        raise AssertionError(f"{service}.{method}({args!r}) succeeded: {result!r}")

    def cli(self, *args: str, input: str | None = None) -> Any:
        return self.cluster.cli(*args, input=input)


def add_user(am: Am, login: str, **fields: Any) -> dict[str, Any]:
    return am.users("add_user", actor="system", login=login, **fields)
