"""`applikant init`: a new installation on this host, ready for `systemctl start`.

Creates the data directory, the repo root, a strong random cookie readable by the
service user only, a config file, and am's database with the first admin. Refuses
to touch an existing installation; `force` rewrites the config file and the cookie
but never replaces a database (its users are kept; the admin is added if missing).

The repo root gets the cluster's marker (frontend/repostore.py: the cluster id is
derived from the cookie), unless it has one; :func:`mark_repo_root` marks an
existing installation's root on the operator's word (`applikant init
--mark-repo-root`).
"""

from __future__ import annotations

import os
import pwd
import secrets
from dataclasses import dataclass
from pathlib import Path

from ..frontend import repostore
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


def _read_cookie(path: Path) -> bytes | None:
    try:
        return path.read_text(encoding="utf-8").strip().encode() or None
    except OSError:
        return None


def _mark(
    root: Path, cookie: bytes, old_cookie: bytes | None, owner: tuple[int, int] | None
) -> None:
    """The cluster's marker on a new root; a root marked with the cookie this
    `init --force` replaces follows the new cookie (the same store, re-keyed)."""
    cluster = repostore.cluster_id(cookie)
    try:
        found = repostore.read_marker(str(root))
    except repostore.MarkerError:
        return  # af and doctor say what is wrong with it
    if found is None:
        repostore.write_marker(str(root), cluster, "applikant init")
    elif old_cookie is not None and found.cluster == repostore.cluster_id(old_cookie):
        repostore.rewrite_marker(str(root), cluster, "applikant init --force")
    _chown(root / repostore.MARKER, owner)


def config_text(data_dir: Path, cookie_file: Path, host: str, dev_mode: bool) -> str:
    return (
        "# Written by `applikant init`; every key is documented in applikant.toml.example.\n\n"
        f'[node]\nhost = "{host}"\ndata_dir = "{data_dir}"\ncookie_file = "{cookie_file}"\n'
        f"dev_mode = {'true' if dev_mode else 'false'}\n"
    )


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
    tmp = cookie_file.with_name(".cookie.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    old_cookie = _read_cookie(cookie_file)
    cookie = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(cookie + "\n")
    _chown(tmp, owner)
    os.replace(tmp, cookie_file)
    _mark(data_dir / "repos", cookie.encode(), old_cookie, owner)
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(config_text(data_dir, cookie_file, host, dev_mode))
    generated = password is None
    password = password or make_password()
    with Store(str(db), passwords=Passwords(fast=fast_hash)) as store:
        try:
            store.add_user(
                admin,
                actor=SYSTEM,
                node="init",
                password=password,
                is_admin=True,
                display_name="Administrator",
            )
        except Conflict:
            if not force:
                raise
            generated = False
            password = None
    for path in data_dir.iterdir():
        if path.name.startswith("am.sqlite3"):
            _chown(path, owner)
    return InitResult(
        config_file, data_dir, cookie_file, db, admin, password if generated else None
    )


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
