"""`applikant doctor`: what operators get wrong, checked, each with how to fix it.

Every check returns a Check: ok or not, what was found, and the fix in words,
with this installation's real paths (the config file in use, the data dir, the
sshd snippet `make install` wrote). Checks that need something an earlier one
found missing are reported as skipped; so are those that need root (sshd's
effective configuration, /etc/shadow) when doctor runs as another user.

What is compared with what:
- sshd: its effective configuration for the service user (`sshd -T` with a
  `-C user=...` connection spec, so `Match` blocks apply) against af's settings:
  the authorized_keys file af writes (or the keys command and its user), keys
  only, and the programs the forced command and the keys command name;
- the data files: every file under the data dir, the repo root and the spool is
  owned by the service user (a restore or a `git` run as root leaves root's
  files, which af and am cannot write), and none is open to others;
- the daemons: every one configured for this host (am, af, aw, ab) answers;
- am's database: a SQLite file at a schema this am knows; or a PostgreSQL
  server that answers, at a schema this am knows, with an active am holding
  the lease (and which one), and connections to spare;
- the service account: it exists, has a shell to run the forced command, and
  logs in with keys only (no password; not locked when sshd runs without PAM).
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from typing import Any

from .. import envconfig, installpaths
from ..config import Config
from ..manager.store.engines import is_url, redact
from ..node import blocking, pmclient
from ..node.errors import DistError
from . import doctor_data

AM_SERVICES = ("am_user_db", "am_repo_db", "am_hook_api", "am_observer")
AF_SERVICES = ("af_auth", "af_hook_server", "af_repo_manager")
DAEMONS = ("am", "af", "aw", "ab")
SSHD = "/usr/sbin/sshd"
SSHD_CONFIG = "/etc/ssh/sshd_config"
#: How many misowned files a check names before it just counts them.
SHOW = 3


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


def snippet_path() -> str:
    """The sshd snippet `make install` wrote, with this installation's paths."""
    return os.path.join(installpaths.SYSCONFDIR, "sshd_applikant.conf")


def service_user(cfg: Config) -> str | None:
    """The account the daemons run as: make install's SERVICE_USER, else the
    owner of the data directory (a development checkout)."""
    if installpaths.SERVICE_USER:
        return installpaths.SERVICE_USER
    try:
        return pwd.getpwuid(os.stat(cfg.node.data_dir).st_uid).pw_name
    except (OSError, KeyError):
        return None


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
            "systemctl start applikant-portmapper; see journalctl -u applikant-portmapper",
        ), None
    return Check("portmapper", "ok", f"{host}:{port}, {len(names)} node(s) registered"), names


def check_daemons(cfg: Config, cookie: bytes, registered: dict[str, int]) -> list[Check]:
    checks = []
    am = cfg.node_name("am")
    for component in DAEMONS:
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


def _data_roots(cfg: Config) -> list[str]:
    """The data dir, and the places af and am write that may lie outside it."""
    roots = [os.path.abspath(cfg.node.data_dir)]
    db = cfg.path(cfg.am.db, "am.sqlite3")
    for path in (
        cfg.path(cfg.af.repo_root, "repos"),
        cfg.path(cfg.af.spool_dir, "spool"),
        *([] if is_url(db) else [os.path.dirname(db)]),
    ):
        path = os.path.abspath(path)
        if not any(path == r or path.startswith(r + os.sep) for r in roots):
            roots.append(path)
    return roots


def check_ownership(cfg: Config, user: str | None) -> list[Check]:
    """Every data file the service user's, none open to others."""
    if user is None:
        return [Check("data owner", "skip", "no service user known (run `applikant init`)")]
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return [Check("data owner", "skip", f"there is no user {user}")]
    roots = [r for r in _data_roots(cfg) if os.path.isdir(r)]
    if not roots:
        return [
            Check(
                "data owner", "fail", f"{cfg.node.data_dir} does not exist", "run `applikant init`"
            )
        ]
    wrong: list[str] = []
    count = 0
    open_to_others: list[str] = []
    for root in roots:
        for top, dirs, files in os.walk(root):
            for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
                try:
                    st = os.lstat(name)
                except OSError:
                    continue  # gone meanwhile (a push's temp file)
                count += 1
                if st.st_uid != uid:
                    wrong.append(f"{name} ({_user_name(st.st_uid)})")
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o002:
                    open_to_others.append(name)
    checks = []
    chown = " && ".join(f"chown -R {user}: {r}" for r in roots)
    if wrong:
        checks.append(
            Check(
                "data owner",
                "fail",
                f"{len(wrong)} of {count} data files are not owned by {user}, e.g. "
                + ", ".join(wrong[:SHOW])
                + " (the daemons run as "
                + user
                + " and cannot write them)",
                f"systemctl stop applikant.target && {chown} && systemctl start applikant.target",
            )
        )
    else:
        checks.append(
            Check("data owner", "ok", f"{count} files under {', '.join(roots)}, all {user}'s")
        )
    top_mode = stat.S_IMODE(os.stat(roots[0]).st_mode)
    if open_to_others or top_mode & 0o007:
        shown = open_to_others[:SHOW] or [f"{roots[0]} (mode {top_mode:04o})"]
        checks.append(
            Check(
                "data modes",
                "fail",
                "open to other users: " + ", ".join(shown),
                f"chmod -R o-rwx {' '.join(roots)}",
            )
        )
    else:
        checks.append(
            Check("data modes", "ok", f"{roots[0]} mode {top_mode:04o}, nothing open to others")
        )
    return checks


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


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
            "restart af (systemctl restart applikant-af): it repairs the hooks of every "
            "repository it knows",
        )
    return Check("repo root", "ok", f"{disk.root}, {len(repos)} repositories, hooks in place")


def check_repo_store(cfg: Config, cookie: bytes) -> Check:
    """The repo root's cluster marker, and what this host's af says of its root."""
    from ..frontend import repostore

    root = cfg.path(cfg.af.repo_root, "repos")
    af = cfg.node_name("af")
    store: dict[str, Any] = {}
    if af.split("@")[1] == envconfig.node_host(cfg.raw):
        try:
            store = _call(cfg, cookie, af, "af_status", "status", node=af).get("store") or {}
        except (DistError, AttributeError):
            pass  # "af up" says why af does not answer
    mount = (
        f"mount the cluster's shared repository root at {root} (the same path as on the "
        "other git hosts), then systemctl restart applikant-af"
    )
    if store.get("state") == "refused":
        return Check("repo store", "fail", f"af refuses {root}: {store.get('reason')}", mount)
    try:
        marker = repostore.read_marker(root)
    except repostore.MarkerError as exc:
        return Check("repo store", "fail", str(exc), mount)
    if marker is None:
        return Check(
            "repo store",
            "warn",
            f"{root} carries no cluster marker yet",
            "start af (the first af of a cluster marks its store); " + mount,
        )
    cluster = repostore.cluster_id(cookie)
    if marker.cluster != cluster:
        return Check(
            "repo store",
            "fail",
            f"{root} is marked for another cluster ({marker.cluster}; this one is {cluster})",
            mount + "; or, if this cluster's cookie was changed on purpose, "
            "`applikant init --mark-repo-root --force`",
        )
    managed = f", managed by {store['manager']}" if store.get("manager") else ""
    return Check("repo store", "ok", f"{root}: cluster {cluster}, store {marker.store}{managed}")


# ---- sshd ---------------------------------------------------------------------


def sshd_effective(sshd_config: str, user: str) -> dict[str, list[str]]:
    """`sshd -T` for a login of `user` from loopback: every keyword (lower case)
    with its values, Match blocks applied. RuntimeError with sshd's words."""
    r = subprocess.run(
        [SSHD, "-T", "-f", sshd_config, "-C", f"user={user},host=localhost,addr=127.0.0.1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[:300] or f"sshd -T exited with {r.returncode}")
    settings: dict[str, list[str]] = {}
    for line in r.stdout.splitlines():
        key, _, value = line.partition(" ")
        settings.setdefault(key.lower(), []).append(value)
    return settings


def _expand_keys_files(value: str, user: pwd.struct_passwd) -> list[str]:
    """AuthorizedKeysFile's tokens, as sshd expands them for `user`."""
    paths = []
    for token in value.split():
        path = (
            token.replace("%%", "\0")
            .replace("%h", user.pw_dir)
            .replace("%u", user.pw_name)
            .replace("%U", str(user.pw_uid))
            .replace("\0", "%")
        )
        paths.append(path if path.startswith("/") else os.path.join(user.pw_dir, path))
    return paths


def _unsafe_for_sshd(program: str) -> str | None:
    """Why sshd would refuse to run `program` as AuthorizedKeysCommand (it and
    every directory above must be root's and writable by no one else)."""
    try:
        path = os.path.realpath(program, strict=True)
    except OSError:
        return f"{program} does not exist"
    if not os.access(path, os.X_OK):
        return f"{path} is not executable"
    while True:
        st = os.stat(path)
        if st.st_uid != 0 or st.st_mode & 0o022:
            return f"{path} is not root's or is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
        if path == "/":
            return None
        path = os.path.dirname(path)


def check_sshd(cfg: Config, user: str | None, sshd_config: str = SSHD_CONFIG) -> list[Check]:
    snippet = snippet_path()
    put_snippet = (
        f"cp {snippet} /etc/ssh/sshd_config.d/applikant.conf && sshd -t && systemctl reload ssh"
    )
    if not os.path.exists(SSHD):
        return [
            Check(
                "sshd",
                "warn",
                "OpenSSH's server is not installed",
                "apt-get install openssh-server",
            )
        ]
    if os.geteuid() != 0:
        return [Check("sshd config", "skip", "sshd -T needs root (run doctor as root)")]
    if user is None:
        return [Check("sshd config", "skip", "no service user known")]
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        return [Check("sshd config", "skip", f"there is no user {user}")]
    try:
        eff = sshd_effective(sshd_config, user)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        return [
            Check(
                "sshd config",
                "fail",
                f"sshd -T -f {sshd_config}: {exc}",
                f"fix the lines sshd names in {sshd_config} or its includes, then systemctl reload ssh",
            )
        ]

    def one(key: str) -> str:
        return (eff.get(key) or [""])[0]

    checks = []
    allowed = " ".join(eff.get("allowusers", [])).split()
    if allowed and not any(a.split("@")[0] in (user, "*") for a in allowed):
        checks.append(
            Check(
                "sshd login",
                "fail",
                f"AllowUsers ({' '.join(allowed)}) leaves {user} out",
                f"add {user} to AllowUsers in {sshd_config}, then systemctl reload ssh",
            )
        )
    if cfg.af.keys_mode == "file":
        keys_file = os.path.abspath(
            cfg.path(cfg.af.authorized_keys, os.path.join(".ssh", "authorized_keys"))
        )
        read = _expand_keys_files(one("authorizedkeysfile"), account)
        if keys_file in read:
            checks.append(
                Check("sshd keys", "ok", f"sshd reads {keys_file} for {user}, as af writes it")
            )
        else:
            checks.append(
                Check(
                    "sshd keys",
                    "fail",
                    f"for {user} sshd reads {' '.join(read) or 'no file'}, but af writes {keys_file}",
                    put_snippet,
                )
            )
    else:
        command = one("authorizedkeyscommand")
        program = command.split()[0] if command and command != "none" else ""
        problem = None
        if not program or not program.endswith("applikant-keys-for"):
            problem = f"for {user} sshd's AuthorizedKeysCommand is {command or 'none'}"
        else:
            problem = _unsafe_for_sshd(program)
        if problem is None and one("authorizedkeyscommanduser") in ("", "none"):
            problem = "AuthorizedKeysCommandUser is not set"
        if problem:
            checks.append(
                Check(
                    "sshd keys",
                    "fail",
                    problem,
                    put_snippet + " (with the keys command lines enabled)",
                )
            )
        else:
            checks.append(Check("sshd keys", "ok", f"sshd asks {command}"))
    loose = [
        f"{key} {one(key)}"
        for key, want in (
            ("passwordauthentication", "no"),
            ("kbdinteractiveauthentication", "no"),
            ("pubkeyauthentication", "yes"),
        )
        if one(key) != want
    ]
    if loose:
        checks.append(
            Check("sshd keys only", "fail", f"for {user}: {', '.join(loose)}", put_snippet)
        )
    else:
        checks.append(Check("sshd keys only", "ok", f"{user} logs in by key only"))
    checks.append(check_account(account, usepam=one("usepam") == "yes"))
    return checks


def check_forced_command(cfg: Config) -> Check:
    """The program in every authorized_keys line, and a script it is given,
    must exist: sshd runs them."""
    from ..frontend.daemon import default_as_command

    try:
        command = cfg.af.as_command or default_as_command()
    except envconfig.ConfigError as exc:
        return Check("forced command", "fail", str(exc), "set [af] as_command")
    program, *args = command.split()
    problem = ""
    if not os.access(program, os.X_OK):
        problem = f"{program} does not exist or is not executable"
    else:  # the default runs a script with the interpreter (python -S .../as_launch.py)
        missing = [arg for arg in args if arg.startswith("/") and not os.access(arg, os.R_OK)]
        if missing:
            problem = f"{missing[0]} does not exist or cannot be read"
    if problem:
        return Check(
            "forced command",
            "fail",
            f"{problem}: every SSH login fails",
            "reinstall (make install) or set [af] as_command to applikant-as's path",
        )
    return Check("forced command", "ok", f"{command}")


def _shadow_field(user: str) -> str | None:
    try:
        with open("/etc/shadow", encoding="utf-8") as f:
            for line in f:
                fields = line.split(":")
                if fields[0] == user:
                    return fields[1]
    except OSError:
        return None
    return None


def check_account(account: pwd.struct_passwd, usepam: bool) -> Check:
    """The service account logs in with keys only, and can run the forced command."""
    user = account.pw_name
    shell = os.path.basename(account.pw_shell)
    if shell in ("nologin", "false", ""):
        return Check(
            "service account",
            "fail",
            f"{user}'s shell is {account.pw_shell}: sshd runs the forced command through it",
            f"usermod -s /bin/sh {user}",
        )
    field = _shadow_field(user)
    keys_only = f"usermod -p '*' {user}"
    if field is None:
        return Check("service account", "skip", "/etc/shadow is not readable")
    if field == "":
        return Check("service account", "fail", f"{user} has an empty password", keys_only)
    if field.startswith("!"):
        if not usepam:
            return Check(
                "service account",
                "fail",
                f"{user} is locked ('!' in /etc/shadow) and sshd runs without PAM: "
                "it refuses every login",
                keys_only,
            )
    elif not field.startswith("*"):
        return Check(
            "service account",
            "fail",
            f"{user} has a password: it must log in with keys only",
            keys_only,
        )
    return Check("service account", "ok", f"{user}, shell {account.pw_shell}, keys only")


def check_authorized_keys(cfg: Config, cookie: bytes) -> Check:
    if cfg.af.keys_mode != "file":
        return Check("authorized_keys", "skip", "sshd asks applikant-keys-for (command mode)")
    from ..frontend import authkeys
    from ..frontend.daemon import default_as_command

    path = cfg.path(cfg.af.authorized_keys, os.path.join(".ssh", "authorized_keys"))
    keys: list[dict] = []
    cursor = None
    try:
        while True:  # every key, a page at a time (am's lists are paged)
            page = _call(
                cfg,
                cookie,
                cfg.node_name("am"),
                "am_user_db",
                "all_keys",
                {"actor": "system", "limit": 1000, "cursor": cursor},
            )
            keys += page["items"]
            cursor = page["next"]
            if cursor is None:
                break
    except DistError as exc:
        return Check("authorized_keys", "skip", f"am does not answer: {exc}")
    expected = authkeys.render(  # newest first, as af writes it (frontend/keysfile.py)
        [(k["user"], k["public_key"], k["fingerprint"]) for k in reversed(keys)],
        cfg.af.as_command or default_as_command(),
    )
    try:
        with open(path, encoding="utf-8") as f:
            actual = f.read()
    except OSError:
        return Check(
            "authorized_keys",
            "fail",
            f"{path} is missing",
            "systemctl start applikant-af: it writes the file from am's keys",
        )
    if actual != expected:
        return Check(
            "authorized_keys",
            "fail",
            f"{path} differs from am's {len(keys)} keys",
            "restart af (systemctl restart applikant-af; it rebuilds the file from am on connect)",
        )
    return Check("authorized_keys", "ok", f"{path}, {len(keys)} keys, in step with am")


def check_database(cfg: Config) -> list[Check]:
    """am's database: there, at a schema this am knows; on PostgreSQL also the
    lease (which am is active) and the server's settings that matter."""
    from ..manager.store.engines import backend_for
    from ..manager.store.schema import MIGRATIONS

    db = cfg.path(cfg.am.db, "am.sqlite3")
    known = len(MIGRATIONS)
    if not is_url(db):
        if not os.path.exists(db):
            return [Check("database", "skip", f"no SQLite file at {db} (am makes it)")]
        try:
            version = backend_for(db).version_of(db) or 0
        except Exception as exc:
            return [Check("database", "fail", f"{db}: {exc}", "restore it from a backup")]
        return [_schema_check(f"SQLite file {db}", version, known)]
    return _check_postgres(db, known, cfg.am.lease_timeout)


def _schema_check(where: str, version: int, known: int) -> Check:
    if version > known:
        return Check(
            "database",
            "fail",
            f"{where} is at schema version {version}; this applikant knows up to {known}",
            "upgrade applikant on this host (every am of the cluster runs one version)",
        )
    if version < known:
        return Check(
            "database",
            "warn",
            f"{where} is at schema version {version} of {known}",
            "start am: it migrates the database (take a backup first: applikant backup)",
        )
    return Check("database", "ok", f"{where}, schema version {version}")


def _check_postgres(url: str, known: int, timeout: float) -> list[Check]:
    from ..manager.lease import current
    from ..manager.store.postgres import connect, schema_version

    shown = redact(url)
    try:
        conn = connect(url, timeout=max(timeout, 3.0), application="applikant-doctor")
    except Exception as exc:
        return [
            Check(
                "database",
                "fail",
                f"PostgreSQL at {shown} does not answer: {str(exc).strip()[:300]}",
                "check [am] db, that the server runs and lets this host in (pg_hba.conf), "
                "and the password (the service user's ~/.pgpass)",
            )
        ]
    try:
        version = schema_version(conn)
        checks = [_schema_check(f"PostgreSQL {shown}", version, known)]
        has_leases = conn.execute("SELECT to_regclass('am_leases')").fetchone()[0] is not None
        lease = current(conn) if has_leases else None
        if lease is None:
            checks.append(Check("am lease", "warn", "no am has taken the lease yet", "start am"))
        elif lease.held:
            since = lease.acquired_at.strftime("%Y-%m-%d %H:%M:%S %Z")
            checks.append(
                Check(
                    "am lease",
                    "ok",
                    f"{lease.holder} is active (epoch {lease.epoch}, since {since})",
                )
            )
        else:
            checks.append(
                Check(
                    "am lease",
                    "fail",
                    f"no am is active: the last lease (epoch {lease.epoch}) was {lease.holder}'s",
                    "start am (systemctl start applikant-am) on a manager host",
                )
            )
        used, most, sync = conn.execute(
            "SELECT (SELECT count(*) FROM pg_stat_activity),"
            " current_setting('max_connections')::int, current_setting('synchronous_commit')"
        ).fetchone()
        spare = int(most) - int(used)
        checks.append(
            Check(
                "database connections",
                "ok" if spare >= 10 else "warn",
                f"{used} of {most} in use (each am uses 4, doctor 1)",
                "" if spare >= 10 else "raise max_connections on the server",
            )
        )
        if sync == "off":
            checks.append(
                Check(
                    "database durability",
                    "warn",
                    "the server has synchronous_commit = off (am turns it on for its own sessions)",
                    "set synchronous_commit = on for the database: "
                    "ALTER DATABASE ... SET synchronous_commit = on",
                )
            )
        return checks
    finally:
        conn.close()


def run_checks(cfg: Config, sshd_config: str = SSHD_CONFIG) -> list[Check]:
    checks: list[Check] = []
    user = service_user(cfg)
    cookie_check, cookie = check_cookie(cfg)
    checks.append(cookie_check)
    checks += check_ownership(cfg, user)
    checks += check_database(cfg)
    pm_check, registered = check_portmapper(cfg)
    checks.append(pm_check)
    if cookie is not None and registered is not None:
        checks += check_daemons(cfg, cookie, registered)
    checks.append(check_repos(cfg))
    if cookie is not None:
        checks.append(check_repo_store(cfg, cookie))
    # Under make run's config its own sshd is the one that matters, unless another
    # sshd_config is named (--sshd-config).
    if sshd_config == SSHD_CONFIG and doctor_data.is_make_run(cfg):
        checks += doctor_data.make_run_sshd_checks(cfg)
    else:
        checks += check_sshd(cfg, user, sshd_config)
    checks.append(check_forced_command(cfg))
    checks += doctor_data.check_events(cfg) + doctor_data.check_disk_reserve(cfg)
    if cookie is not None and registered is not None:
        checks.append(check_authorized_keys(cfg, cookie))
    if shutil.which("git") is None:
        checks.append(Check("git", "fail", "git is not installed", "apt-get install git"))
    return checks
