"""`applikant backup DEST` / `applikant restore SRC`, while everything runs.

A backup is a directory: `am.sqlite3` (SQLite's online backup API: a consistent
snapshot even while am writes), one git bundle per repository (`git bundle
create --all` reads a consistent set of refs), and `manifest.json` listing what is
there with checksums. The database is copied first and the repositories after, so
every push the database records has its commits in a bundle. It is written under
a temporary name and renamed into place: a backup that exists is complete.

Restore goes onto an empty installation (no database, no repositories): the
database is copied back, each repository is created with its hooks and fetched
from its bundle, its default branch set again.

This covers one host that holds both am's database and the repositories (the
embedded default); on several hosts, run it where am's database lives for the
database and on each git host for the repositories.
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..frontend.repodisk import RepoDisk

FORMAT = 1


class BackupError(Exception):
    """The backup or restore could not be made; nothing is left half-done."""


def _git(*args: str, cwd: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    r = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise BackupError(f"git {' '.join(args[:2])} failed: {r.stderr.strip()}")
    return r.stdout


def _refs(git_dir: str) -> dict[str, str]:
    """Every ref of a repository: name -> object id."""
    refs: dict[str, str] = {}
    for line in _git("for-each-ref", "--format=%(objectname) %(refname)", cwd=git_dir).splitlines():
        oid, name = line.split(" ", 1)
        refs[name] = oid
    return refs


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def backup(db: Path, disk: RepoDisk, dest: Path) -> dict[str, Any]:
    """Write a complete backup to `dest` (which must not exist); return the manifest."""
    repo_root = Path(disk.root)
    if dest.exists():
        raise BackupError(f"{dest} exists; choose a new directory for the backup")
    if not db.exists():
        raise BackupError(f"no database at {db}")
    tmp = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "repos").mkdir(parents=True)
    try:
        source = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        target = sqlite3.connect(tmp / "am.sqlite3")
        with target:
            source.backup(target)
        source.close()
        target.close()
        repos: dict[str, Any] = {}
        for repo in disk.list():
            path = repo_root / f"{repo}.git"
            head = _git("symbolic-ref", "--short", "HEAD", cwd=str(path)).strip()
            refs = _refs(str(path))
            entry: dict[str, Any] = {"head": head, "refs": refs}
            if refs:
                bundle = tmp / "repos" / f"{repo}.bundle"
                bundle.parent.mkdir(parents=True, exist_ok=True)
                _git("bundle", "create", str(bundle), "--all", cwd=str(path))
                entry["bundle"] = f"repos/{repo}.bundle"
                entry["sha256"] = _sha256(bundle)
            repos[repo] = entry
        manifest = {
            "format": FORMAT,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": socket.gethostname(),
            "database": "am.sqlite3",
            "database_sha256": _sha256(tmp / "am.sqlite3"),
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


def restore(src: Path, db: Path, disk: RepoDisk) -> dict[str, Any]:
    """Restore a verified backup onto an empty installation; repositories are
    created through `disk` (af's layout: hooks included)."""
    manifest = verify(src)
    repo_root = Path(disk.root)
    if db.exists():
        raise BackupError(f"{db} exists: restore goes onto an empty installation only")
    if disk.list():
        raise BackupError(f"{repo_root} holds repositories: restore onto an empty one")
    db.parent.mkdir(parents=True, exist_ok=True)
    tmp_db = db.with_name(f".{db.name}.restoring")
    shutil.copyfile(src / manifest["database"], tmp_db)
    created: list[str] = []
    try:
        for repo, entry in manifest["repos"].items():
            path = disk.create(repo, default_branch=entry["head"])
            created.append(repo)
            if "bundle" in entry:
                _git(
                    "fetch",
                    "--quiet",
                    str((src / entry["bundle"]).resolve()),
                    "+refs/*:refs/*",
                    cwd=path,
                )
            if _refs(path) != entry["refs"]:
                raise BackupError(f"{repo} came back with other refs than it was saved with")
        os.replace(tmp_db, db)
    except BaseException:
        tmp_db.unlink(missing_ok=True)
        for repo in created:  # back to the empty installation it was
            disk.delete(repo)
        raise
    return manifest
