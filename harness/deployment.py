"""The reference deployment on a namespace network: am, af (with a real sshd) and aw
each on a host of their own, with a portmapper and a config file per host, TLS on
every link, and git clients on a host without Applikant.

    net = Network(["manager", "git", "web", "client"], tmp)
    d = Deployment(net, base, pki)            # base: a path without "_" (see below)
    d.start_manager("manager")
    d.start_git("git")                         # portmapper, af, sshd on <git ip>:22
    d.start_web("web")                         # aw on <web ip>:8008
    alice = d.add_user("alice", password="...")
    d.git("client", alice, "clone", d.ssh_url("git", "alice/project"), "w")

`base` must hold letters, digits and /._+- only: af puts `--config <path>` of its
host's config file into sshd's forced commands, and refuses other characters
(pytest's tmp_path has "_" in it; tmp_path_factory.mktemp("dep") does not).

Every process is started inside a host through the Network, which stops it by PID
and removes the namespaces when it is closed.

The repository store: every git host and the web host use one directory,
`d.store` (<base>/store), as their repo root. Network namespaces separate the
hosts' networks but not their file systems, so that one host path stands in for
the network file system (NFS, CephFS) a real deployment mounts on each of them at
the same path. `start_git(label, repo_root=...)` gives a host a root of its own
instead (a host whose mount is missing, or another cluster's store).

`python -m harness.deployment call NODE SERVICE METHOD [JSON]` is a node
call from inside a host (with that host's config): the JSON reply on stdout, or
`error <Kind>: <message>` on stderr and exit status 1.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.netns import Network, NsProc
from harness.wait import wait_until

COOKIE = "multihost-deployment-cookie-0123456789"
PM_PORT = 4370  # every host has its own network stack: the default port is free
LISTEN_MIN, LISTEN_MAX = 9100, 9199
SSH_PORT = 22
HTTP_PORT = 8008
SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = "/usr/bin/ssh-keygen"
PY = sys.executable


@dataclass
class User:
    login: str
    id: str
    key: str  # private key path
    pub: str
    password: str


@dataclass
class GitHost:
    label: str
    data: Path
    repo_root: Path
    keys_file: Path
    spool_dir: Path
    af: NsProc | None = None
    sshd: NsProc | None = None


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything of git, Applikant or ssh."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("GIT_", "APPLIKANT_", "SSH_", "NOTIFY_SOCKET"))
    }
    env.update(extra)
    return env


class Deployment:
    def __init__(
        self,
        net: Network,
        base: Path,
        pki: Path | None,
        *,
        tick_time: float = 2.0,
        manager: str = "manager",
    ) -> None:
        if any(c not in "/._+-" and not c.isalnum() for c in str(base)):
            raise ValueError(f"{base}: letters, digits and /._+- only (forced command)")
        self.net = net
        self.base = base
        self.pki = pki
        self.tick_time = tick_time
        self.manager = manager
        self.cookie_file = base / "cookie"
        self.cookie_file.write_text(COOKIE)
        os.chmod(self.cookie_file, 0o600)
        self.git_hosts: dict[str, GitHost] = {}
        self.home = base / "home"  # the git clients' HOME
        self.home.mkdir(exist_ok=True)
        self.keys_dir = base / "keys"
        self.keys_dir.mkdir(exist_ok=True)
        self.store = base / "store"  # the shared repository root (see the module docstring)
        self.daemons: dict[tuple[str, str], NsProc] = {}
        self._n = 0
        self._configs: dict[str, dict[str, dict[str, Any]]] = {}

    # ---- names and configs -------------------------------------------------------

    def ip(self, label: str) -> str:
        return self.net.host(label).ip

    def node(self, component: str, label: str) -> str:
        """The long node name of `component` on host `label`: am@10.77.0.2."""
        return f"{component}@{self.ip(label)}"

    @property
    def am(self) -> str:
        return self.node("am", self.manager)

    def data(self, label: str) -> Path:
        d = self.base / label
        d.mkdir(exist_ok=True)
        return d

    def config_path(self, label: str) -> Path:
        return self.base / f"{label}.toml"

    def write_config(
        self, label: str, *, variant: str = "", tls: bool = True, **sections: dict[str, Any]
    ) -> Path:
        """Host `label`'s config: its address in node names, the portmapper on
        loopback (registrations) and on the host's address (lookups from other
        hosts), nodes listening on the host's address in LISTEN_MIN..MAX, TLS with
        the host's certificate, am on the manager host; plus `sections`, merged
        into what earlier calls wrote. `variant`: another file for the same host
        (<label>-<variant>.toml); `tls=False`: without [dist.tls]."""
        ip = self.ip(label)
        tables: dict[str, dict[str, Any]] = {
            "node": {
                "host": ip,
                "data_dir": str(self.data(label)),
                "cookie_file": str(self.cookie_file),
                "dev_mode": True,
            },
            "dist": {
                "portmapper_host": "127.0.0.1",
                "portmapper_port": PM_PORT,
                "portmapper_listen": ["127.0.0.1", ip],
                "bind_host": ip,
                "listen_min": LISTEN_MIN,
                "listen_max": LISTEN_MAX,
                "tick_time": float(self.tick_time),
                "connect_timeout": 2.0,
                "handshake_timeout": 2.0,
                "call_timeout": 5.0,
                "portmapper_wait": 5.0,
            },
            "am": {"node": self.am},
        }
        if self.pki is not None and tls:
            tables["dist.tls"] = {
                "enabled": True,
                "ca": str(self.pki / "ca" / "ca.pem"),
                "cert": str(self.pki / ip / f"{ip}.pem"),
                "key": str(self.pki / ip / f"{ip}.key"),
            }
        old = self._configs.setdefault(label + variant, {})
        for name, table in list(tables.items()) + list(sections.items()):
            old.setdefault(name, {}).update(table)
        lines: list[str] = []
        for name, table in old.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
            lines.append("")
        path = self.config_path(label + (f"-{variant}" if variant else ""))
        path.write_text("\n".join(lines))
        return path

    def env(self, label: str, **extra: str) -> dict[str, str]:
        return _clean_env(
            APPLIKANT_CONFIG=str(self.config_path(label)), PYTHONUNBUFFERED="1", **extra
        )

    # ---- running things inside a host --------------------------------------------

    def exec(
        self,
        label: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        input: str | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """A short command inside host `label`, with exactly `env` (default: the host's)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.net.host(label).ns, *argv],
            env=env if env is not None else self.env(label),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def cli(
        self, label: str, *args: str, input: str | None = None, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`applikant ARGS` on host `label` with its config (or `config`): an
        ephemeral node there."""
        env = self.env(label)
        if config is not None:
            env["APPLIKANT_CONFIG"] = str(config)
        return self.exec(label, [PY, "-m", "applikant.cli.main", *args], input=input, env=env)

    def cli_ok(self, label: str, *args: str, input: str | None = None) -> Any:
        """`applikant ARGS --json` on host `label`: the parsed output; AssertionError if it fails."""
        r = self.cli(label, *args, "--json", input=input)
        assert r.returncode == 0, f"applikant {' '.join(args)} on {label}: {r.stderr}"
        return json.loads(r.stdout)

    def call(
        self,
        label: str,
        node: str,
        service: str,
        method: str,
        args: Any = None,
    ) -> Any:
        """A call to `service.method` on `node`, made from host `label` (the local
        service names of that node); AssertionError when it fails."""
        r = self.call_raw(label, node, service, method, args)
        assert r.returncode == 0, f"{service}.{method} on {node} from {label}: {r.stderr}"
        return json.loads(r.stdout)

    def call_raw(
        self, label: str, node: str, service: str, method: str, args: Any = None
    ) -> subprocess.CompletedProcess[str]:
        return self.exec(
            label,
            [
                PY,
                "-m",
                "harness.deployment",
                "call",
                node,
                service,
                method,
                json.dumps(args),
            ],
        )

    def _daemon(
        self, label: str, component: str, argv: list[str], env: dict[str, str] | None = None
    ) -> NsProc:
        """Start a daemon in host `label` and wait for its READY=1 (a NOTIFY_SOCKET is
        a path in the file system, so it reaches across network namespaces)."""
        from harness.notify import NotifySocket

        self._n += 1
        where = self.base / f"n{self._n}"
        where.mkdir()
        notify = NotifySocket(where)
        try:
            proc = self.net.run(
                label,
                argv,
                name=component,
                env={**self.env(label), **(env or {}), "NOTIFY_SOCKET": notify.path},
            )
            try:
                notify.wait_for("READY=1")
            except AssertionError:
                raise AssertionError(
                    f"{component} on {label} did not start:\n{proc.log_text()}"
                ) from None
        finally:
            notify.close()
            os.unlink(notify.path)
        self.daemons[(label, component)] = proc
        return proc

    def start_portmapper(self, label: str) -> NsProc:
        """The host's portmapper, on loopback and the host's address (`portmapper_listen`)."""
        if not self.config_path(label).exists():
            self.write_config(label)
        proc = self._daemon(label, "portmapper", [PY, "-m", "applikant.cli.main", "portmapper"])
        listening = {(a, p) for a, p, _ in self.net.listening(label)}
        assert {("127.0.0.1", PM_PORT), (self.ip(label), PM_PORT)} <= listening, listening
        return proc

    def start(self, label: str, component: str, env: dict[str, str] | None = None) -> NsProc:
        """`applikant start COMPONENT` in host `label` (with `env` added to the host's)."""
        return self._daemon(
            label, component, [PY, "-m", "applikant.cli.main", "start", component], env
        )

    def stop(self, label: str, component: str) -> None:
        self.daemons.pop((label, component)).stop()

    def kill(self, label: str, component: str) -> None:
        """SIGKILL (a crash: no goodbye to the cluster), then reap."""
        import signal

        proc = self.daemons.pop((label, component))
        proc.signal(signal.SIGKILL)
        proc.popen.wait(10)
        proc.stop()

    def log(self, label: str, component: str) -> str:
        return self.daemons[(label, component)].log_text()

    # ---- the hosts -------------------------------------------------------------------

    def start_manager(self, label: str | None = None) -> NsProc:
        label = label or self.manager
        self.write_config(label)
        self.start_portmapper(label)
        return self.start(label, "am")

    def start_git(
        self,
        label: str,
        *,
        repo_root: Path | None = None,
        env: dict[str, str] | None = None,
        sshd: bool = True,
    ) -> GitHost:
        """A git host: portmapper, af (the shared store as its repo root unless
        `repo_root` is given; sshd's authorized_keys and the spool under the host's
        data dir; `env` added to af's environment) and a real sshd on the host's
        address, port 22, reading af's authorized_keys (as harness/gitenv.py, but
        in the namespace)."""
        data = self.data(label)
        host = GitHost(
            label,
            data,
            repo_root or self.store,
            data / "ssh" / "authorized_keys",
            data / "spool",
        )
        self.write_config(
            label,
            af={
                "repo_root": str(host.repo_root),
                "authorized_keys": str(host.keys_file),
                "spool_dir": str(host.spool_dir),
                "keys_mode": "file",
                "am_retry": 0.2,
            },
        )
        if (label, "portmapper") not in self.daemons:
            self.start_portmapper(label)
        host.af = self.start(label, "af", env)
        self.git_hosts[label] = host
        self.wait_af_synced(label)
        if sshd:
            host.sshd = self.start_sshd(label, host.keys_file)
        return host

    def start_web(self, label: str) -> NsProc:
        """aw on <host>:8008. It reads the repositories from `[aw] repo_root`: the
        shared store, as every git host (see the module docstring)."""
        self.write_config(
            label,
            aw={"listen": f"{self.ip(label)}:{HTTP_PORT}", "repo_root": str(self.store)},
        )
        self.start_portmapper(label)
        proc = self.start(label, "aw")
        self.net.wait_listening(label, HTTP_PORT, proc=proc)
        return proc

    def start_sshd(self, label: str, keys_file: Path) -> NsProc:
        """OpenSSH's sshd in host `label` on <host address>:22, with the config of
        applikant/ops/sshd.py (the one gitenv and `make run` use)."""
        from applikant.ops.sshd import SshServer

        server = SshServer(self.data(label), port=SSH_PORT, authorized_keys=keys_file)
        server.dir.mkdir(parents=True, exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        keys_file.parent.mkdir(parents=True, exist_ok=True)
        if not keys_file.exists():
            keys_file.touch(mode=0o600)
        subprocess.run(
            [
                SSH_KEYGEN,
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"{label}-host",
                "-f",
                str(server.host_key),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        server.port = SSH_PORT
        text = server._config()
        assert "ListenAddress 127.0.0.1\n" in text
        text = text.replace("ListenAddress 127.0.0.1\n", f"ListenAddress {self.ip(label)}\n")
        server.config_path.write_text(text)
        proc = self.net.run(
            label,
            [SSHD, "-D", "-f", str(server.config_path), "-E", str(server.log_path)],
            name="sshd",
        )
        self.net.wait_listening(label, SSH_PORT, proc=proc)
        return proc

    # ---- af ----------------------------------------------------------------------------

    def af_status(self, label: str) -> dict[str, Any] | None:
        """af's status on git host `label` (asked on that host), None if it cannot say."""
        r = self.call_raw(label, self.node("af", label), "af_status", "status")
        return json.loads(r.stdout) if r.returncode == 0 else None

    def wait_af_synced(self, label: str, timeout: float = 30.0) -> dict[str, Any]:
        def ok() -> Any:
            s = self.af_status(label)
            return s if s and s.get("am_up") and s.get("synced") else None

        return wait_until(ok, timeout, what=f"af on {label} synced with am")

    # ---- people and repositories (the admin CLI on the manager host) ----------------------

    def add_user(self, login: str, password: str, *, key: bool = True) -> User:
        from applikant.ops.sshd import make_client_key

        user = self.cli_ok(
            self.manager, "user", "add", login, "--password-stdin", input=password + "\n"
        )
        priv, pub = make_client_key(self.keys_dir, name=f"id_{login}")
        u = User(login, user["id"], priv, pub, password)
        if key:
            self.add_key(u)
        return u

    def add_key(self, user: User) -> dict[str, Any]:
        return self.cli_ok(self.manager, "key", "add", user.login, "-", input=user.pub + "\n")

    def key_installed(self, label: str, user: User) -> bool:
        keys = self.git_hosts[label].keys_file
        return keys.exists() and user.pub.split()[1] in keys.read_text()

    def pushes(self, repo: str, label: str | None = None) -> list[dict[str, Any]]:
        """Accepted pushes to `repo` in am's audit log (`applikant audit --json` on
        host `label`, the manager by default), oldest first."""
        entries = self.cli_ok(
            label or self.manager, "audit", "--action", "push", "--repo", repo, "--limit", "10000"
        )
        return sorted((e for e in entries if e["action"] == "push"), key=lambda e: e["id"])

    def pushed_commits(self, repo: str) -> list[str]:
        """Every new commit of every ref in the recorded pushes (with repeats)."""
        return [ref["new"] for e in self.pushes(repo) for ref in e["details"]["refs"]]

    def global_names(self, label: str, node: str) -> dict[str, str]:
        return self.cli_ok(label, "global-names", "--node", node)

    # ---- git clients -----------------------------------------------------------------

    def ssh_command(self, user: User) -> str:
        from applikant.ops.sshd import SshServer

        args = SshServer(self.base, port=SSH_PORT).ssh_args(user.key)
        i = args.index("-p")
        args[i + 1] = str(SSH_PORT)
        return shlex.join(args)

    def ssh_url(self, git: str, repo: str) -> str:
        return f"root@{self.ip(git)}:{repo}.git"

    def http_url(self, web: str, repo: str, user: User | None = None) -> str:
        auth = f"{user.login}:{user.password}@" if user else ""
        return f"http://{auth}{self.ip(web)}:{HTTP_PORT}/{repo}.git"

    def git(
        self, label: str, user: User | None, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """git inside host `label`, as `user` over SSH (their key)."""
        env = _clean_env(
            HOME=str(self.home),
            GIT_CONFIG_NOSYSTEM="1",
            GIT_AUTHOR_NAME="t",
            GIT_AUTHOR_EMAIL="t@example.org",
            GIT_COMMITTER_NAME="t",
            GIT_COMMITTER_EMAIL="t@example.org",
            GIT_TERMINAL_PROMPT="0",
        )
        if user is not None:
            env["GIT_SSH_COMMAND"] = self.ssh_command(user)
        r = self.exec(label, ["git", *args], env=env, cwd=cwd)
        if check and r.returncode != 0:
            raise AssertionError(
                f"git {' '.join(args)} on {label} failed ({r.returncode}):\n{r.stderr}"
            )
        return r

    def push_together(
        self, label: str, user: User, works: dict[str, Path], ref: str = "HEAD:refs/heads/main"
    ) -> dict[str, subprocess.CompletedProcess[str]]:
        """`git push origin REF` from each work dir at the same moment (one thread
        each, released together), from host `label`; the results by key."""
        import threading

        results: dict[str, subprocess.CompletedProcess[str]] = {}
        start = threading.Barrier(len(works))

        def push(key: str) -> None:
            start.wait()
            results[key] = self.git(label, user, "push", "origin", ref, cwd=works[key], check=False)

        threads = [threading.Thread(target=push, args=(key,)) for key in works]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    def ssh(
        self, label: str, user: User, git: str, command: str
    ) -> subprocess.CompletedProcess[str]:
        return self.exec(
            label,
            [*shlex.split(self.ssh_command(user)), f"root@{self.ip(git)}", command],
            env=_clean_env(HOME=str(self.home)),
        )

    def commit(self, label: str, work: Path, message: str) -> str:
        name = f"f{time.monotonic_ns()}"
        (work / name).write_text(message + "\n")
        self.git(label, None, "add", name, cwd=work)
        self.git(label, None, "commit", "-q", "-m", message, cwd=work)
        return self.git(label, None, "rev-parse", "HEAD", cwd=work).stdout.strip()

    def head(self, git: str, repo: str, ref: str = "refs/heads/main") -> str | None:
        """A ref of a repo on git host `git` (read from its repo root directly)."""
        r = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.git_hosts[git].repo_root / f"{repo}.git"),
                "rev-parse",
                "--verify",
                "-q",
                ref,
            ],
            capture_output=True,
            text=True,
            env=_clean_env(HOME=str(self.home)),
        )
        return r.stdout.strip() or None

    def http(self, label: str, url: str, *args: str) -> tuple[int, str]:
        """curl inside host `label`: (status, body)."""
        r = self.exec(
            label,
            ["curl", "-sS", "--max-time", "15", "-o", "-", "-w", "\n%{http_code}", *args, url],
            env=_clean_env(),
        )
        assert r.returncode == 0, f"curl {url} on {label}: {r.stderr}"
        body, _, code = r.stdout.rpartition("\n")
        return int(code), body


def _call_main(argv: list[str]) -> int:
    from applikant import envconfig
    from applikant.node import blocking
    from applikant.node.errors import DistError

    node, service, method = argv[:3]
    args = json.loads(argv[3]) if len(argv) > 3 else None
    raw = envconfig.load_raw()
    try:
        reply = blocking.call(
            node,
            envconfig.cookie(raw),
            service,
            method,
            args,
            prefix="test",
            node=node,
            settings=envconfig.dist_settings(raw),
            timeout=10.0,
        )
    except DistError as exc:
        print(f"error {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(reply))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["call"]:
        sys.exit(_call_main(sys.argv[2:]))
    sys.exit(f"usage: {sys.argv[0]} call NODE SERVICE METHOD [JSON]")
