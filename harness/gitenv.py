"""A whole git host on loopback for tests and benchmarks: portmapper, am, af and a
real OpenSSH sshd reading af's authorized_keys, plus git clients with their own keys.

    with GitSite(tmp_path) as site:
        alice = site.add_user("alice")              # a user with a fresh key
        site.create_repo("alice/project")
        site.clone(alice, "alice/project", tmp_path / "w")

Every process is started by this harness and stopped by PID when the block ends.
With `account=` (harness/account.py) the site runs as production runs it: sshd
logs clients in as that service account, and am, af and aw run as it; without,
everything runs as the user running the tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from applikant import procs
from applikant.node import blocking
from applikant.node.errors import DistError
from applikant.node.settings import DistSettings
from harness.account import ServiceAccount
from harness.cluster import Cluster
from harness.notify import NotifySocket
from harness.sshd import SshServer, make_client_key
from harness.wait import TIMEOUT, wait_until

__all__ = ["GitSite", "User", "git_env"]


def git_env(home: Path, **extra: str) -> dict[str, str]:
    """A git client environment: no GIT_* of the caller, no user or system config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "APPLIKANT_", "SSH_"))}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.org",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.org",
        GIT_TERMINAL_PROMPT="0",
    )
    env.update(extra)
    return env


@dataclass
class User:
    login: str
    id: str
    key: str  # private key path
    pub: str  # public key line
    key_id: str = ""


class GitSite:
    """See the module docstring. ``keys_mode`` is af's ("file" or "command");
    ``account`` the service account everything runs as (None: this user)."""

    def __init__(
        self,
        tmp: Path,
        *,
        keys_mode: str = "file",
        af_toml: str = "",
        extra_keys_files: tuple[Path, ...] = (),
        account: ServiceAccount | None = None,
        data: dict[str, Path] | None = None,
        disk_reserve_mb: int | None = None,
    ) -> None:
        """``data`` may place ``db`` (am's database), ``repos``, ``spool`` and
        ``keys`` (authorized_keys) elsewhere than under ``tmp``, e.g. on small
        filesystems a test fills; ``disk_reserve_mb`` sets ``[node]``'s;
        ``account`` runs the site as that service account (harness/account.py)."""
        self.account = account
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        data = data or {}
        self.keys_mode = keys_mode
        self.keys_file = data.get("keys", self.tmp / "ssh") / "authorized_keys"
        self.repo_root = data.get("repos", self.tmp) / "repos"
        self.spool_dir = data.get("spool", self.tmp) / "spool"
        self.db = data.get("db", self.tmp) / "am.sqlite3"
        extra = (
            (f'\n[am]\ndb = "{self.db}"\n' if "db" in data else "")
            + f'\n[af]\nrepo_root = "{self.repo_root}"\nauthorized_keys = "{self.keys_file}"\n'
            f'spool_dir = "{self.spool_dir}"\nkeys_mode = "{keys_mode}"\nam_retry = 0.2\n{af_toml}'
        )
        node = "" if disk_reserve_mb is None else f"disk_reserve_mb = {disk_reserve_mb}\n"
        self.cluster = Cluster(
            self.tmp, tick_time=5.0, extra_toml=extra, node_toml=node, account=account
        )
        self.env = dict(self.cluster.env)
        self.settings = DistSettings(portmapper_port=self.cluster.pm_port, call_timeout=30.0)
        self.cookie = self.cluster.cookie.encode()
        self.am_node = self.cluster.node("am")
        self.af_node = self.cluster.node("af")
        self.am_proc: procs.Proc | None = None
        self.af_proc: procs.Proc | None = None
        self.home = self.tmp / "home"
        self.home.mkdir(exist_ok=True)
        self.keys_dir = self.tmp / "keys"
        self.keys_dir.mkdir(exist_ok=True)
        bindir = os.path.dirname(os.path.abspath(self.cluster.python))
        sshd_extra = ""
        if keys_mode == "command":
            keys_for = self._safe_keys_for(f"{bindir}/applikant-keys-for")
            sshd_extra = (
                f"AuthorizedKeysCommand {keys_for} --config {self.cluster.config} %u %f\n"
                "AuthorizedKeysCommandUser root\n"
            )
        self.sshd = SshServer(
            self.tmp,
            authorized_keys=self.keys_file if keys_mode == "file" else None,
            extra_config=sshd_extra,
            extra_keys_files=extra_keys_files,
            user=account.name if account else None,
        )
        self._n = 0

    # ---- lifecycle -------------------------------------------------------------

    def __enter__(self) -> GitSite:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        if self.account is not None:
            self.keys_file.parent.mkdir(mode=0o700, exist_ok=True)  # af writes there
            self.account.own(self.tmp)
        self.cluster.start_portmapper()
        self.start_am()
        self.start_af()
        self.sshd.start()
        self.wait_synced()

    def _safe_keys_for(self, program: str) -> str:
        """sshd runs an AuthorizedKeysCommand only from a path whose every directory
        is root's and not writable by others: a checkout under /tmp is not. A
        two-line wrapper in a fresh directory under /run is (removed in stop())."""
        self._keys_for_dir = tempfile.mkdtemp(prefix="applikant-test-", dir="/run")
        os.chmod(self._keys_for_dir, 0o755)
        wrapper = os.path.join(self._keys_for_dir, "keys-for")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec {program} "$@"\n')
        os.chmod(wrapper, 0o755)
        return wrapper

    def stop(self) -> None:
        self.sshd.stop()
        self.cluster.stop()
        if getattr(self, "_keys_for_dir", None):
            shutil.rmtree(self._keys_for_dir, ignore_errors=True)

    def _daemon(self, component: str, argv: list[str]) -> procs.Proc:
        self._n += 1
        where = self.tmp / f"n{self._n}"  # a short path: AF_UNIX names are limited to 107 bytes
        where.mkdir(exist_ok=True)
        notify = NotifySocket(where)
        os.chmod(notify.path, 0o777)  # as systemd's: any service account may write
        try:
            proc = procs.Proc(
                self.cluster.as_account(argv),
                env={**self.env, "NOTIFY_SOCKET": notify.path},
                log_path=str(self.tmp / f"{component}-{self._n}.log"),
            )
            self.cluster.procs.append(proc)
            try:
                notify.wait_for("READY=1")
            except AssertionError:
                raise AssertionError(f"{component} did not start:\n{proc.log_text()}") from None
        finally:
            notify.close()
            os.unlink(notify.path)
        return proc

    def start_am(self) -> None:
        self.am_proc = self._daemon(
            "am", [self.cluster.python, "-m", "applikant.cli.main", "start", "am"]
        )

    def kill_am(self, sig: int = signal.SIGKILL) -> None:
        assert self.am_proc is not None
        self.am_proc.signal(sig)
        self.am_proc.popen.wait(10)
        self.am_proc.stop()

    def start_af(self) -> None:
        self.af_proc = self._daemon(
            "af", [self.cluster.python, "-m", "applikant.cli.main", "start", "af"]
        )

    def stop_af(self, sig: int = signal.SIGTERM) -> None:
        assert self.af_proc is not None
        self.af_proc.signal(sig)
        self.af_proc.popen.wait(10)
        self.af_proc.stop()

    def status(self) -> dict[str, Any]:
        return self.call_af("af_status", "status", None)

    def wait_synced(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """Wait until af is linked to am and has applied a full snapshot."""

        def ok() -> Any:
            try:
                s = self.status()
            except DistError:
                return None
            return s if s["am_up"] and s["synced"] else None

        return wait_until(ok, timeout, "af to sync with am")

    # ---- calls ------------------------------------------------------------------

    def call_am(self, service: str, method: str, args: Any = None, timeout: float = 15.0) -> Any:
        """A call to am as the cluster itself (``actor = "system"``, a site admin)."""
        if isinstance(args, dict):
            args = {"actor": "system", **args}
        return blocking.call(
            self.am_node,
            self.cookie,
            service,
            method,
            args,
            prefix="test",
            settings=self.settings,
            timeout=timeout,
        )

    def call_af(self, service: str, method: str, args: Any = None, timeout: float = 15.0) -> Any:
        return blocking.call(
            self.af_node,
            self.cookie,
            service,
            method,
            args,
            prefix="test",
            node=self.af_node,
            settings=self.settings,
            timeout=timeout,
        )

    # ---- people, repos (as the site admin, through am's services) ------------------

    def add_user(self, login: str, *, with_key: bool = True, wait: bool = True) -> User:
        user = self.call_am("am_user_db", "add_user", {"login": login})
        key, pub = make_client_key(self.keys_dir, name=f"id_{login}")
        u = User(login, user["id"], key, pub)
        if with_key:
            self.add_key(u, wait=wait)
        return u

    def add_key(self, user: User, *, wait: bool = True) -> None:
        key = self.call_am("am_user_db", "add_key", {"user": user.id, "key": user.pub})
        user.key_id = key["id"]
        if wait and self.keys_mode == "file":
            blob = user.pub.split()[1]
            wait_until(
                lambda: blob in self.keys_file.read_text(),
                what=f"{user.login}'s key in authorized_keys",
            )

    def remove_key(self, user: User) -> None:
        self.call_am("am_user_db", "remove_key", {"key": user.key_id})

    def create_repo(self, path: str, *, wait: bool = True, **kwargs: Any) -> dict[str, Any]:
        repo = self.call_am("am_repo_db", "create_repo", {"path": path, **kwargs})
        git_dir = self.repo_root / (path + ".git")
        if wait:
            wait_until(lambda: (git_dir / "HEAD").exists(), what=f"{path} on disk")
        return repo

    def grant(self, repo: str, grantee: str, level: str) -> None:
        self.call_am("am_repo_db", "grant", {"repo": repo, "grantee": grantee, "level": level})

    def protect(self, repo: str, pattern: str, **kwargs: Any) -> None:
        self.call_am("am_repo_db", "protect_branch", {"repo": repo, "pattern": pattern, **kwargs})

    def pushes(self, repo: str) -> list[dict[str, Any]]:
        """Audit entries of accepted pushes to ``repo``, oldest first."""
        entries = self.call_am(
            "am_repo_db", "query_audit", {"query": {"action": "push", "repo": repo, "limit": 10000}}
        )["items"]
        return sorted((e for e in entries if e["action"] == "push"), key=lambda e: e["id"])

    # ---- git ----------------------------------------------------------------------

    def ssh(self, user: User, command: str) -> subprocess.CompletedProcess[str]:
        return self.sshd.run(user.key, command)

    def url(self, repo: str) -> str:
        return self.sshd.url(f"{repo}.git")

    def git(
        self,
        user: User | None,
        *args: str,
        cwd: Path | None = None,
        check: bool = True,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        extra = {"GIT_SSH_COMMAND": self.sshd.ssh_command(user.key)} if user else {}
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=git_env(self.home, **extra),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def clone(
        self, user: User, repo: str, dest: Path, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.git(user, "clone", "-q", self.url(repo), str(dest), check=check)

    def commit(self, work: Path, message: str = "change", branch: str = "main") -> str:
        """A new commit on ``branch`` in the working copy ``work``; its id."""
        if not (work / ".git").exists():
            self.git(None, "init", "-q", "-b", branch, str(work))
        name = f"f{time.monotonic_ns()}"
        (work / name).write_text(message + "\n")
        self.git(None, "add", name, cwd=work)
        self.git(None, "commit", "-q", "-m", message, cwd=work)
        return self.git(None, "rev-parse", "HEAD", cwd=work).stdout.strip()

    def push(
        self, user: User, work: Path, *refspecs: str, check: bool = True, force: bool = False
    ) -> subprocess.CompletedProcess[str]:
        args = ["push", "--porcelain"] + (["--force"] if force else [])
        return self.git(
            user,
            *args,
            self.url_of(work),
            *(refspecs or ("HEAD:refs/heads/main",)),
            cwd=work,
            check=check,
        )

    def url_of(self, work: Path) -> str:
        return (
            self.git(None, "config", "remote.origin.url", cwd=work, check=False).stdout.strip()
            or "origin"
        )

    def head(self, repo: str, ref: str = "refs/heads/main") -> str | None:
        proc = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.repo_root / f"{repo}.git"),
                "rev-parse",
                "--verify",
                "-q",
                ref,
            ],
            capture_output=True,
            text=True,
            env=git_env(self.home),
        )
        return proc.stdout.strip() or None
