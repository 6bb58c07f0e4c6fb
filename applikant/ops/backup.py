"""`applikant backup DEST` / `applikant restore SRC`, while everything runs.

A backup is a directory: `am.sqlite3` (SQLite's online backup API: a consistent
snapshot even while am writes), one git bundle per repository (`git bundle
create --all` reads a consistent set of refs), and `manifest.json` listing what is
there with checksums. The database is copied first and the repositories after, so
every push the database records has its commits in a bundle. It is written under
a temporary name and renamed into place: a backup that exists is complete. It
holds password and token hashes, webhook secrets and private repositories, so it
is readable by whoever made it only (directories 0700, files 0600).

Restore goes onto an installation with no repositories: a fresh `applikant init`
(whose new database is moved aside, never deleted, when `force` is given) or an
empty data directory. The database is copied back, each repository is created
with its hooks and fetched from its bundle, its default branch set again.

Both run as the service user or as root. As root, git is told that the service
user's repositories are safe for that one invocation (`-c safe.directory`), and
everything restore writes is handed to the owner of the data directory, so the
daemons (which run as that user) can use it.

This covers one host that holds both am's database and the repositories (the
embedded default); on several hosts, run it where am's database lives for the
database and on each git host for the repositories.

When `[am] db` is a PostgreSQL URL the database part is `am.pgdump`, made by
`pg_dump --format=custom` (one consistent snapshot, while am writes) and put
back by `pg_restore` into the database the URL names: an empty one, or with
`force` one whose tables are replaced (pg_restore --clean; take a backup of it
first if it holds anything of value). pg_dump and pg_restore come with
Debian's `postgresql-client` and must be at least the server's version. The
database's own replication and point-in-time recovery stay the database's
business; this is the cluster's portable snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..manager.store.engines import is_url, redact

if TYPE_CHECKING:
    from ..frontend.repodisk import RepoDisk

FORMAT = 1
#: What SQLite keeps beside a database in WAL mode.
SIDECARS = ("-wal", "-shm")
#: The database file in a backup, by backend.
DUMP_NAMES = {"sqlite": "am.sqlite3", "postgresql": "am.pgdump"}


class BackupError(Exception):
    """The backup or restore could not be made; nothing is left half-done."""


def _git(*args: str, cwd: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    # As root on the service user's repositories git refuses ("dubious
    # ownership"); trusting this one path for this one call is all we need.
    safe = ["-c", f"safe.directory={cwd}"] if cwd else []
    r = subprocess.run(["git", *safe, *args], cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise BackupError(f"git {' '.join(args[:2])} failed: {r.stderr.strip()}")
    return r.stdout


def _refs(path: str) -> dict[str, str]:
    lines = _git("for-each-ref", "--format=%(objectname) %(refname)", cwd=path).splitlines()
    return {ref: sha for sha, ref in (line.split(" ", 1) for line in lines)}


def _bundle_refs(bundle: str, cwd: str) -> dict[str, str]:
    """The refs a bundle holds (its HEAD line left out), as `_refs` gives them."""
    lines = _git("bundle", "list-heads", bundle, cwd=cwd).splitlines()
    pairs = (line.split(" ", 1) for line in lines if line.strip())
    return {ref: sha for sha, ref in pairs if ref != "HEAD"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: A backup is for its owner only; a restore gets the units' UMask=0027.
BACKUP_UMASK = 0o077
RESTORE_UMASK = 0o027


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    """Everything made inside, by us and by git, gets modes within `mask`."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def owner_of(path: Path) -> tuple[int, int]:
    """(uid, gid) of `path`: the data directory belongs to the service user."""
    st = os.stat(path)
    return st.st_uid, st.st_gid


def chown_tree(root: Path, owner: tuple[int, int]) -> int:
    """Give `root` and everything below it (links themselves, not their targets)
    to `owner`; return how many entries changed hands."""
    changed = 0
    uid, gid = owner
    for top, dirs, files in os.walk(root):
        for name in [top, *(os.path.join(top, n) for n in dirs + files)]:
            st = os.lstat(name)
            if (st.st_uid, st.st_gid) != owner:
                os.lchown(name, uid, gid)
                changed += 1
    return changed


def _copy_database(db: Path, target: Path) -> None:
    """SQLite's online backup of `db` into `target`. (Run as root, SQLite gives
    any -wal/-shm file it makes to the database's owner: am can still open them.)"""
    source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out = sqlite3.connect(target)
        try:
            with out:
                source.backup(out)
        finally:
            out.close()
    finally:
        source.close()


def _pg_tool(name: str) -> str:
    """pg_dump or pg_restore: on PATH (Debian's wrapper), or the newest installed."""
    import glob

    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise BackupError(f"{name} is not installed (apt-get install postgresql-client)")
    return found


def _pg(tool: str, *args: str) -> None:
    r = subprocess.run([_pg_tool(tool), *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise BackupError(f"{tool} failed: {r.stderr.strip()[-800:]}")


def _dump_database(db: Path | str, target: Path) -> None:
    if is_url(str(db)):
        _pg(
            "pg_dump",
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--file",
            str(target),
            f"--dbname={db}",
        )
    else:
        _copy_database(Path(db), target)


def backup(db: Path | str, disk: RepoDisk, dest: Path) -> dict[str, Any]:
    """Write a complete backup to `dest` (which must not exist); return the
    manifest. `db` is the SQLite file, or the PostgreSQL URL."""
    repo_root = Path(disk.root)
    kind = "postgresql" if is_url(str(db)) else "sqlite"
    if dest.exists():
        raise BackupError(f"{dest} exists; choose a new directory for the backup")
    if not dest.parent.is_dir():
        raise BackupError(f"{dest.parent} does not exist; make it first")
    if kind == "sqlite" and not Path(db).exists():
        raise BackupError(f"no database at {db}")
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    dump = DUMP_NAMES[kind]
    with _umask(BACKUP_UMASK):
        (tmp / "repos").mkdir(parents=True)
        try:
            _dump_database(db, tmp / dump)
            repos: dict[str, Any] = {}
            for repo in disk.list():
                path = str(repo_root / f"{repo}.git")
                head = _git("symbolic-ref", "--short", "HEAD", cwd=path).strip()
                refs = _refs(path)
                entry: dict[str, Any] = {"head": head, "refs": refs}
                if refs:
                    bundle = tmp / "repos" / f"{repo}.bundle"
                    bundle.parent.mkdir(parents=True, exist_ok=True)
                    _git("bundle", "create", str(bundle), "--all", cwd=path)
                    # A push may land between reading the refs and bundling them:
                    # the refs kept are the bundle's own, which a restore checks.
                    entry["refs"] = _bundle_refs(str(bundle), path)
                    entry["bundle"] = f"repos/{repo}.bundle"
                    entry["sha256"] = _sha256(bundle)
                repos[repo] = entry
            manifest = {
                "format": FORMAT,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "host": socket.gethostname(),
                "database": dump,
                "database_kind": kind,
                "database_sha256": _sha256(tmp / dump),
                "repos": repos,
            }
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
            os.replace(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return manifest


def verify(src: Path) -> dict[str, Any]:
    """Read the manifest and check every checksum; BackupError on any mismatch."""
    try:
        manifest = json.loads((src / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{src} is not an Applikant backup (no readable manifest.json)") from exc
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')!r} is not supported")
    if _sha256(src / manifest["database"]) != manifest["database_sha256"]:
        raise BackupError("the database in the backup does not match its checksum")
    for repo, entry in manifest["repos"].items():
        if "bundle" in entry and _sha256(src / entry["bundle"]) != entry["sha256"]:
            raise BackupError(f"the bundle of {repo} does not match its checksum")
    return manifest


def _set_aside(db: Path, stamp: str) -> list[tuple[Path, Path]]:
    """Rename the database and its sidecars out of the way; return the moves."""
    moves = []
    for suffix in ("", *SIDECARS):
        path = Path(f"{db}{suffix}")
        if path.exists():
            aside = path.with_name(f"{db.name}.before-restore-{stamp}{suffix}")
            os.rename(path, aside)
            moves.append((path, aside))
    return moves


def _pg_has_tables(url: str) -> bool:
    from ..manager.store.postgres import connect, schema_version

    try:
        conn = connect(url)
    except Exception as exc:
        raise BackupError(f"cannot reach the database {redact(url)}: {exc}") from None
    try:
        return schema_version(conn) > 0
    finally:
        conn.close()


def _restore_postgres(
    src: Path, manifest: dict[str, Any], url: str, disk: RepoDisk, force: bool
) -> None:
    """The repositories as for SQLite, then pg_restore (last: a failure before
    leaves the database as it was)."""
    if _pg_has_tables(url) and not force:
        raise BackupError(
            f"{redact(url)} holds am's tables: restore goes into an empty database; to "
            "replace them (a fresh install's), add --force"
        )
    created: list[str] = []
    try:
        _restore_repos(src, manifest, disk, created)
        clean = ["--clean", "--if-exists"] if force else []
        _pg(
            "pg_restore",
            "--no-owner",
            "--no-privileges",
            "--single-transaction",
            "--exit-on-error",
            *clean,
            f"--dbname={url}",
            str(src / manifest["database"]),
        )
    except BaseException:
        for repo in created:
            disk.delete(repo)
        raise


def restore(
    src: Path,
    db: Path | str,
    disk: RepoDisk,
    *,
    force: bool = False,
    owner: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Restore a verified backup onto an installation with no repositories.

    An existing database (the one `applikant init` makes) is refused unless
    `force`; then it is renamed to `am.sqlite3.before-restore-<time>`, with its
    -wal and -shm (a stale WAL beside the restored file would be replayed into
    it). Repositories are created through `disk` (af's layout: hooks included).
    When `owner` is given (root restoring for the service user), the database
    and the repo root are handed to it. The manifest is returned.
    """
    manifest = verify(src)
    repo_root = Path(disk.root)
    if disk.list():
        raise BackupError(f"{repo_root} holds repositories: restore onto an empty one")
    kind = manifest.get("database_kind", "sqlite")
    if kind != ("postgresql" if is_url(str(db)) else "sqlite"):
        raise BackupError(
            f"the backup holds a {kind} database, but [am] db names "
            + ("a PostgreSQL database" if is_url(str(db)) else "a SQLite file")
            + ": restore onto the same kind of store"
        )
    if kind == "postgresql":
        with _umask(RESTORE_UMASK):
            _restore_postgres(src, manifest, str(db), disk, force)
        if owner is not None:
            chown_tree(repo_root, owner)
        return manifest
    db = Path(db)
    if db.exists() and not force:
        raise BackupError(
            f"{db} exists: restore goes onto an empty installation; to replace the "
            "database of a fresh `applikant init`, add --force (it is kept beside, renamed)"
        )
    with _umask(RESTORE_UMASK):
        _restore(src, manifest, db, disk)
    if owner is not None:
        os.chown(db, *owner)
        chown_tree(repo_root, owner)
    return manifest


def _restore(src: Path, manifest: dict[str, Any], db: Path, disk: RepoDisk) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp_db = db.with_name(f".{db.name}.restoring")
    shutil.copyfile(src / manifest["database"], tmp_db)
    created: list[str] = []
    moved: list[tuple[Path, Path]] = []
    try:
        _restore_repos(src, manifest, disk, created)
        moved = _set_aside(db, time.strftime("%Y%m%d-%H%M%S"))
        os.replace(tmp_db, db)
    except BaseException:
        tmp_db.unlink(missing_ok=True)
        for original, aside in moved:
            os.rename(aside, original)
        for repo in created:  # back to the empty installation it was
            disk.delete(repo)
        raise


def _restore_repos(src: Path, manifest: dict[str, Any], disk: RepoDisk, created: list[str]) -> None:
    """Every repository of the backup, created through `disk` and fetched from
    its bundle; `created` names those made so far (undone on failure)."""
    for repo, entry in manifest["repos"].items():
        path = disk.create(repo, default_branch=entry["head"])
        created.append(repo)
        if "bundle" in entry:
            bundle = str((src / entry["bundle"]).resolve())
            _git("fetch", "--quiet", bundle, "+refs/*:refs/*", cwd=path)
        if _refs(path) != entry["refs"]:
            raise BackupError(f"{repo} came back with other refs than it was saved with")
