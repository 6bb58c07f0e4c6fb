"""Setting up a host: `applikant init` (`initialize`) and `make run` (`dev_setup`).

`initialize` makes a new installation, ready for `systemctl start`: the data
directory, the repo root, a strong random cookie readable by the service user
only, a config file, and am's database with the first admin. It refuses to touch
an existing installation; `force` rewrites the config file and the cookie but
never replaces a database (its users are kept; the admin is added if missing).

`dev_setup` is what `make run` does on every start: the same config file and
cookie, rewritten, and the admin `root` with a new password.

Every file is written through `fsutil.write_atomic` (temp file, fsync, rename,
directory fsync): a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..fsutil import write_atomic
from ..manager.errors import BadRequest, Conflict
from ..manager.names import check_owner_name, check_password
from ..manager.passwords import Passwords
from ..manager.store import SYSTEM, Store


class InitError(Exception):
    """Nothing was changed; the message says why and what to do."""


@dataclass
class InitResult:
    config_file: Path
    data_dir: Path
    cookie_file: Path
    db: Path
    admin: str
    password: str | None  # generated passwords are returned once, to be printed once


def make_password() -> str:
    return secrets.token_urlsafe(15)


def _owner(user: str | None) -> tuple[int, int] | None:
    if user is None:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise InitError(
            f"there is no user {user!r}; create it first "
            f"(useradd --system --home-dir /var/lib/applikant {user})"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _chown(path: Path, owner: tuple[int, int] | None) -> None:
    if owner is not None and os.geteuid() == 0:
        os.chown(path, *owner)


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
    db: Path,
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
            store.add_user(
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
            store.set_password(admin, password, actor=SYSTEM, node=node)
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
    existing = [p for p in (config_file, cookie_file) if p.exists()]
    if existing and not force:
        raise InitError(
            f"{existing[0]} exists: this host is already set up "
            "(use --force to rewrite the config file and the cookie)"
        )
    if db.exists() and not force:
        raise InitError(f"{db} exists: refusing to touch an existing database")
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o750)
    _chown(data_dir, owner)
    for sub in ("repos", "spool", ".ssh"):
        d = data_dir / sub
        d.mkdir(exist_ok=True)
        os.chmod(d, 0o700 if sub == ".ssh" else 0o750)
        _chown(d, owner)
    write_cookie(cookie_file, owner)
    write_config(config_file, config_text(data_dir, cookie_file, host, dev_mode))
    shown = ensure_admin(db, admin, password, fast_hash=fast_hash)
    for path in data_dir.iterdir():
        if path.name.startswith("am.sqlite3"):
            _chown(path, owner)
    return InitResult(config_file, data_dir, cookie_file, db, admin, shown)


def dev_setup(data_dir: Path, config_file: Path, settings: str) -> str:
    """`make run`'s set-up, on every start: the config file (`[node]` for one host
    in development mode, then `settings`, more TOML sections) and a fresh cookie,
    both rewritten, and the admin `root`, made or given a new password. Returns
    that password, to be printed."""
    cookie_file = data_dir / "cookie"
    write_config(
        config_file,
        "# Written by `make run`: development settings, one host.\n\n"
        + node_section(data_dir, cookie_file, "localhost", True)
        + "\n"
        + settings,
    )
    write_cookie(cookie_file)
    password = make_password()
    ensure_admin(data_dir / "am.sqlite3", "root", password, reset=True, node="make-run")
    return password
