"""`applikant doctor`: what operators get wrong, checked, each with how to fix it.

Every check returns a Check: ok or not, what was found, and the fix in words.
Checks that need something an earlier one found missing are reported as skipped.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from typing import Any

from .. import envconfig
from ..config import Config
from ..node import blocking, pmclient
from ..node.errors import DistError
from . import doctor_data

AM_SERVICES = ("am_user_db", "am_repo_db", "am_hook_api", "am_observer")
AF_SERVICES = ("af_auth", "af_hook_server", "af_repo_manager")


@dataclass
class Check:
    name: str
    status: str  # "ok", "fail", "warn" or "skip"
    found: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "found": self.found, "fix": self.fix}


def _call(
    cfg: Config,
    cookie: bytes,
    peer: str,
    target: str,
    method: str,
    args: Any = None,
    node: str | None = None,
) -> Any:
    return blocking.call(
        peer, cookie, target, method, args, node=node, settings=cfg.dist, timeout=5, prefix="doctor"
    )


def check_cookie(cfg: Config) -> tuple[Check, bytes | None]:
    if os.environ.get("APPLIKANT_COOKIE"):
        return Check("cookie", "ok", "from APPLIKANT_COOKIE"), os.environ[
            "APPLIKANT_COOKIE"
        ].encode()
    path = envconfig.cookie_file(cfg.raw)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        cookie = envconfig.cookie(cfg.raw)
    except OSError:
        return Check(
            "cookie",
            "fail",
            f"{path} is missing",
            "run `applikant init` (it makes a strong cookie)",
        ), None
    except envconfig.ConfigError as exc:
        return Check("cookie", "fail", str(exc), "run `applikant init --force`"), None
    if mode & 0o077:
        return Check(
            "cookie",
            "fail",
            f"{path} has mode {mode:04o}: others can read it",
            f"chmod 0400 {path} (owned by the service user)",
        ), cookie
    if len(cookie) < 20:
        return Check(
            "cookie",
            "warn",
            f"{path} holds a short cookie ({len(cookie)} bytes)",
            "run `applikant init --force` for a strong one",
        ), cookie
    return Check("cookie", "ok", f"{path}, mode {mode:04o}"), cookie


def check_portmapper(cfg: Config) -> tuple[Check, dict[str, int] | None]:
    host, port = cfg.dist.portmapper_host, cfg.dist.portmapper_port
    try:
        names = pmclient.names(host, port)
    except DistError as exc:
        return Check(
            "portmapper",
            "fail",
            str(exc),
            "systemctl start applikant-portmapper (or `applikant portmapper`)",
        ), None
    return Check("portmapper", "ok", f"{host}:{port}, {len(names)} node(s) registered"), names


def check_daemons(cfg: Config, cookie: bytes, registered: dict[str, int]) -> list[Check]:
    checks = []
    am = cfg.node_name("am")
    for component in ("am", "af", "aw"):
        node = cfg.node_name(component)
        if node.split("@")[1] != envconfig.node_host(cfg.raw):
            checks.append(Check(f"{component} up", "skip", f"{node} runs on another host"))
            continue
        if node.split("@")[0] not in registered:
            checks.append(
                Check(
                    f"{component} up",
                    "fail",
                    f"{node} is not registered here",
                    f"systemctl start applikant-{component}; see journalctl -u "
                    f"applikant-{component}",
                )
            )
            continue
        try:
            _call(cfg, cookie, node, "node", "ping", node=node)
            checks.append(Check(f"{component} up", "ok", f"{node} answers"))
        except DistError as exc:
            checks.append(
                Check(
                    f"{component} up",
                    "fail",
                    str(exc),
                    "check that this host uses the cluster's cookie",
                )
            )
    try:
        names = _call(cfg, cookie, am, "node", "global_names", node=am)
        nodes = _call(cfg, cookie, am, "node", "nodes", node=am)
    except DistError as exc:
        checks.append(Check("one cluster", "skip", f"am does not answer: {exc}"))
        return checks
    missing = [n for n in AM_SERVICES + AF_SERVICES if n not in names]
    if missing:
        checks.append(
            Check(
                "one cluster",
                "fail",
                f"global names missing: {', '.join(missing)}",
                "start the daemons that provide them; `applikant status` shows which nodes am sees",
            )
        )
    else:
        checks.append(Check("one cluster", "ok", f"am sees {', '.join(nodes) or 'no other node'}"))
    return checks


def check_repos(cfg: Config) -> Check:
    from ..frontend.daemon import repo_disk

    root = cfg.path(cfg.af.repo_root, "repos")
    if not os.path.isdir(root):
        return Check("repo root", "fail", f"{root} does not exist", "run `applikant init`")
    disk = repo_disk(cfg)
    repos = disk.list()
    problems = [problem for repo in repos for problem in disk.check_hooks(repo)]
    if problems:
        return Check(
            "repo root",
            "fail",
            "; ".join(problems[:5]),
            "restart af: it repairs the hooks of every repository it knows",
        )
    return Check("repo root", "ok", f"{disk.root}, {len(repos)} repositories, hooks in place")


def check_sshd() -> list[Check]:
    sshd = "/usr/sbin/sshd"
    if not os.path.exists(sshd):
        return [
            Check(
                "sshd",
                "warn",
                "OpenSSH's server is not installed",
                "apt-get install openssh-server",
            )
        ]
    files = ["/etc/ssh/sshd_config", *sorted(glob.glob("/etc/ssh/sshd_config.d/*.conf"))]
    text = ""
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                text += f.read()
        except OSError:
            pass
    checks = []
    if "applikant" in text:
        checks.append(Check("sshd snippet", "ok", "sshd's config mentions applikant"))
    else:
        checks.append(
            Check(
                "sshd snippet",
                "fail",
                "no applikant setup in sshd's config",
                "copy /etc/applikant/sshd_applikant.conf.example to "
                "/etc/ssh/sshd_config.d/applikant.conf and reload sshd",
            )
        )
    if os.geteuid() == 0:
        r = subprocess.run([sshd, "-t"], capture_output=True, text=True)
        if r.returncode == 0:
            checks.append(Check("sshd -t", "ok", "sshd's configuration is valid"))
        else:
            checks.append(
                Check(
                    "sshd -t",
                    "fail",
                    r.stderr.strip()[:300],
                    "fix the lines sshd -t names, then systemctl reload ssh",
                )
            )
    else:
        checks.append(Check("sshd -t", "skip", "needs root"))
    return checks


def check_authorized_keys(cfg: Config, cookie: bytes) -> Check:
    if cfg.af.keys_mode != "file":
        return Check("authorized_keys", "skip", "sshd asks applikant-keys-for (command mode)")
    from ..frontend import authkeys
    from ..frontend.daemon import default_as_command

    path = cfg.path(cfg.af.authorized_keys, os.path.join(".ssh", "authorized_keys"))
    try:
        keys = _call(
            cfg, cookie, cfg.node_name("am"), "am_user_db", "all_keys", {"actor": "system"}
        )
    except DistError as exc:
        return Check("authorized_keys", "skip", f"am does not answer: {exc}")
    expected = authkeys.render(
        [(k["user"], k["public_key"]) for k in keys], cfg.af.as_command or default_as_command()
    )
    try:
        with open(path, encoding="utf-8") as f:
            actual = f.read()
    except OSError:
        return Check(
            "authorized_keys",
            "fail",
            f"{path} is missing",
            "start af: it writes the file from am's keys",
        )
    if actual != expected:
        return Check(
            "authorized_keys",
            "fail",
            f"{path} differs from am's {len(keys)} keys",
            "restart af (it rebuilds the file from am on connect)",
        )
    return Check("authorized_keys", "ok", f"{path}, {len(keys)} keys, in step with am")


def run_checks(cfg: Config) -> list[Check]:
    checks: list[Check] = []
    cookie_check, cookie = check_cookie(cfg)
    checks.append(cookie_check)
    pm_check, registered = check_portmapper(cfg)
    checks.append(pm_check)
    if cookie is not None and registered is not None:
        checks += check_daemons(cfg, cookie, registered)
    checks.append(check_repos(cfg))
    checks += (
        doctor_data.make_run_sshd_checks(cfg) if doctor_data.is_make_run(cfg) else check_sshd()
    )
    checks += doctor_data.check_events(cfg) + doctor_data.check_disk_reserve(cfg)
    if cookie is not None and registered is not None:
        checks.append(check_authorized_keys(cfg, cookie))
    if shutil.which("git") is None:
        checks.append(Check("git", "fail", "git is not installed", "apt-get install git"))
    return checks
