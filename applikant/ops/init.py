"""Setting up a host: `applikant init` (`initialize`), `make run` (`dev_setup`), and
what ab's unit needs before its sandbox (`prepare_builder`).

`initialize` makes a new installation, ready for `systemctl start`: the data
directory (0700), the repo root, a strong random cookie readable by the service
user only, a config file, and am's database (0600, as its -wal and -shm) with
the first admin, all owned by the service user. It refuses to touch an existing installation; `force` rewrites the
config file and the cookie but never replaces a database (its users are kept; the
admin is added if missing).

`dev_setup` is what `make run` does on every start: the data directory made
private (0700), the same config file and cookie, rewritten, and the admin
`root`, made with a password on the first run only (a password changed later,
in the web UI or with `applikant user passwd root`, is kept).

`prepare_builder` is what ab's unit runs as root before ab's sandbox applies
(`/etc` and everything outside its ReadWritePaths are read-only to ab itself):
the build user named in `[builder]`, and the builds directory.

Every file is written through `fsutil.write_atomic` (temp file, fsync, rename,
directory fsync): a crash leaves the old file or the new one, never half of one.

The repo root gets the cluster's marker (frontend/repostore.py: the cluster id is
derived from the cookie) unless it has one; a root marked with the cookie that
`initialize(force=True)` or `dev_setup` replaces follows the new cookie (the same
store, re-keyed). :func:`mark_repo_root` marks a root on the operator's word
(`applikant init --mark-repo-root`).
"""

from __future__ import annotations

import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import envconfig, installpaths
from ..frontend import repostore
from ..fsutil import write_atomic
from ..manager.errors import BadRequest, Conflict
from ..manager.names import check_owner_name, check_password
from ..manager.passwords import Passwords
from ..manager.store import SYSTEM, Store
from ..manager.store.engines import is_url

if TYPE_CHECKING:
    from ..config import Config


class InitError(Exception):
    """Nothing was changed; the message says why and what to do."""


@dataclass
class InitResult:
    config_file: Path
    data_dir: Path
    cookie_file: Path
    db: Path | str  # the SQLite file, or the PostgreSQL URL the kept config names
    admin: str
    password: str | None  # generated passwords are returned once, to be printed once
    config_kept: bool = False  # an existing config file naming this data dir was kept


def make_password() -> str:
    return secrets.token_urlsafe(15)


def _owner(user: str | None) -> tuple[int, int] | None:
    if user is None:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise InitError(
            f"there is no user {user!r}; create it first: useradd --system --user-group "
            f"--home-dir {installpaths.DATA_DIR} --shell /bin/sh {user} && usermod -p '*' {user}"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _chown(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None and os.geteuid() == 0:
        os.chown(path, *owner)


def make_private_dir(data_dir: Path) -> None:
    """The data directory, made when missing, its owner's only (0700): it holds
    am's database (password and token hashes, webhook secrets), the cookie and
    the private repositories. Every daemon runs as its owner (ab, as root, reads
    the repositories for the checkout; builds run elsewhere, as the build user)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)


def node_section(data_dir: Path, cookie_file: Path, host: str, dev_mode: bool) -> str:
    return (
        f'[node]\nhost = "{host}"\ndata_dir = "{data_dir}"\ncookie_file = "{cookie_file}"\n'
        f"dev_mode = {'true' if dev_mode else 'false'}\n"
    )


def config_text(data_dir: Path, cookie_file: Path, host: str, dev_mode: bool) -> str:
    return (
        "# Written by `applikant init`; every key is documented in applikant.toml.example.\n\n"
        + node_section(data_dir, cookie_file, host, dev_mode)
    )


def write_config(config_file: Path, text: str) -> None:
    """The config file (mode 0644: it holds paths, no secret), its directory made."""
    config_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(str(config_file), text, mode=0o644)


def _read_cookie(path: Path) -> bytes | None:
    try:
        return path.read_text(encoding="utf-8").strip().encode() or None
    except OSError:
        return None


def mark_new_cookie(
    root: Path, cookie_file: Path, old_cookie: bytes | None, owner: tuple[int, int] | None = None
) -> None:
    """After a new cookie: the cluster's marker on a root that has none, and a root
    marked with the cookie just replaced (`old_cookie`) re-keyed to the new one."""
    cookie = _read_cookie(cookie_file)
    if cookie is None or not root.is_dir():
        return
    cluster = repostore.cluster_id(cookie)
    try:
        found = repostore.read_marker(str(root))
    except repostore.MarkerError:
        return  # af and doctor say what is wrong with it
    if found is None:
        repostore.write_marker(str(root), cluster, "applikant init")
    elif old_cookie is not None and found.cluster == repostore.cluster_id(old_cookie):
        repostore.rewrite_marker(str(root), cluster, "applikant init (new cookie)")
    else:
        return
    _chown(root / repostore.MARKER, owner)


def write_cookie(cookie_file: Path, owner: tuple[int, int] | None = None) -> None:
    """A fresh strong random cookie, mode 0400, owned by `owner` when we are root."""
    uid, gid = owner if owner is not None and os.geteuid() == 0 else (None, None)
    write_atomic(
        str(cookie_file),
        secrets.token_urlsafe(32) + "\n",
        mode=0o400,
        owner_uid=uid,
        owner_gid=gid,
    )


def ensure_admin(
    db: Path | str,
    admin: str,
    password: str | None = None,
    *,
    reset: bool = False,
    node: str = "init",
    fast_hash: bool = False,
) -> str | None:
    """Make `admin` a site admin in am's database at `db` (created when missing).

    A missing admin is added with `password`, or a generated one. An existing one
    keeps its password unless `reset`, which gives it `password` (or a generated
    one). Returns the generated password, to be shown once; None when none was
    generated or the admin was left as it was.
    """
    generated = password is None
    password = password or make_password()
    with Store(str(db), passwords=Passwords(fast=fast_hash)) as store:
        try:
            store.users.add(
                admin,
                actor=SYSTEM,
                node=node,
                password=password,
                is_admin=True,
                display_name="Administrator",
            )
        except Conflict:
            if not reset:
                return None
            store.users.set_password(admin, password, actor=SYSTEM, node=node)
    return password if generated else None


def initialize(
    config_file: Path,
    data_dir: Path,
    *,
    admin: str = "root",
    password: str | None = None,
    host: str = "",
    service_user: str | None = None,
    force: bool = False,
    dev_mode: bool = False,
    fast_hash: bool = False,
) -> InitResult:
    owner = _owner(service_user)
    try:  # everything checked before anything is written
        check_owner_name(admin)
        if password is not None:
            check_password(password)
    except BadRequest as exc:
        raise InitError(exc.message) from None
    cookie_file = data_dir / "cookie"
    db = data_dir / "am.sqlite3"
    if cookie_file.exists() and not force:
        raise InitError(
            f"{cookie_file} exists: this host is already set up "
            "(use --force to rewrite the config file and the cookie)"
        )
    # A config file without its data dir (a host rebuilt, a restore onto a new
    # data dir) is kept with the operator's edits, when it names this data dir.
    keep_config = config_file.exists() and not force
    if keep_config:
        problem = _config_disagrees(config_file, data_dir, cookie_file)
        if problem:
            raise InitError(f"{config_file} {problem} (use --force to rewrite it)")
    # A kept config may put am's store on PostgreSQL: the admin goes there (an
    # admin that exists already, made on another manager host, is left as it is).
    url = _postgres_db(config_file) if keep_config else None
    if url is None and db.exists() and not force:
        raise InitError(f"{db} exists: refusing to touch an existing database")
    make_private_dir(data_dir)
    _chown(data_dir, owner)
    for sub in ("repos", "spool", ".ssh"):
        d = data_dir / sub
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o700 if sub == ".ssh" else 0o750)
        _chown(d, owner)
    old_cookie = _read_cookie(cookie_file)
    write_cookie(cookie_file, owner)
    mark_new_cookie(data_dir / "repos", cookie_file, old_cookie, owner)
    if not keep_config:
        write_config(config_file, config_text(data_dir, cookie_file, host, dev_mode))
    shown = ensure_admin(url or db, admin, password, fast_hash=fast_hash)
    for path in data_dir.iterdir():
        if path.name.startswith("am.sqlite3"):
            _chown(path, owner)
    return InitResult(config_file, data_dir, cookie_file, url or db, admin, shown, keep_config)


def dev_setup(data_dir: Path, config_file: Path, settings: str) -> str | None:
    """`make run`'s set-up, on every start: the config file (`[node]` for one host
    in development mode, then `settings`, more TOML sections) and a fresh cookie,
    both rewritten, and the admin `root`, made on the first run. Returns root's
    password when it was made now (to be printed once), else None: root keeps
    whatever password it has."""
    cookie_file = data_dir / "cookie"
    make_private_dir(data_dir)
    write_config(
        config_file,
        "# Written by `make run`: development settings, one host.\n\n"
        + node_section(data_dir, cookie_file, "localhost", True)
        + "\n"
        + settings,
    )
    old_cookie = _read_cookie(cookie_file)
    write_cookie(cookie_file)
    mark_new_cookie(data_dir / "repos", cookie_file, old_cookie)
    return ensure_admin(data_dir / "am.sqlite3", "root", node="make-run")


def _postgres_db(config_file: Path) -> str | None:
    """The PostgreSQL URL of `[am] db` in the config file, or None (SQLite)."""
    db = envconfig.section(envconfig.load_raw(str(config_file)), "am").get("db") or ""
    return db if is_url(db) else None


def _config_disagrees(config_file: Path, data_dir: Path, cookie_file: Path) -> str | None:
    """Why an existing config file cannot serve this data dir, or None."""
    try:
        raw = envconfig.load_raw(str(config_file))
    except envconfig.ConfigError as exc:
        return f"cannot be read: {exc}"
    if os.path.abspath(envconfig.data_dir(raw)) != str(data_dir):
        return f"names another data dir ({envconfig.data_dir(raw)})"
    if os.path.abspath(envconfig.cookie_file(raw)) != str(cookie_file):
        return f"names another cookie file ({envconfig.cookie_file(raw)})"
    return None


def next_steps(result: InitResult) -> list[str]:
    """What the operator does after init, with this installation's real paths."""
    snippet = os.path.join(installpaths.SYSCONFDIR, "sshd_applikant.conf")
    return [
        "next:",
        f"  cp {snippet} /etc/ssh/sshd_config.d/applikant.conf && sshd -t && systemctl reload ssh",
        "  systemctl enable --now applikant.target",
        "  applikant doctor",
    ]


def prepare_builder(cfg: Config) -> list[str]:
    """Make the build user (when `create_build_user`) and the builds directory
    (root's, mode 0711: each build's work dir inside is handed to the build
    user); return what was done, one line each. InitError when it cannot."""
    from ..builder.users import BuildUserError, ensure_build_user

    settings = cfg.builder.resolved(cfg.node.data_dir)
    done = []
    if os.geteuid() == 0:
        try:
            user = ensure_build_user(settings.build_user, settings.create_build_user)
        except BuildUserError as exc:
            raise InitError(str(exc)) from None
        done.append(f"build user {user.name} (uid {user.uid})")
    root = Path(settings.builds_root)
    root.mkdir(mode=0o711, parents=True, exist_ok=True)
    done.append(f"builds directory {root}")
    return done


def mark_repo_root(root: Path, cookie: bytes, *, replace: bool = False) -> repostore.Marker:
    """Mark ``root`` as this cluster's store: when it has no marker (its store was
    lost for good and this root starts again), or, with ``replace``, when it
    carries another cluster id (the cookie was changed on purpose: the store id
    is kept). InitError when it is another cluster's and ``replace`` is not set."""
    cluster = repostore.cluster_id(cookie)
    try:
        found = repostore.read_marker(str(root))
    except repostore.MarkerError as exc:
        raise InitError(f"{exc}; move it away first") from None
    if found is not None and found.cluster == cluster:
        return found
    if found is not None and not replace:
        raise InitError(
            f"{root} is marked for cluster {found.cluster}, not this cluster ({cluster}); "
            "if the cookie was changed on purpose, add --force to re-mark it"
        )
    return repostore.rewrite_marker(str(root), cluster, "applikant init --mark-repo-root")
