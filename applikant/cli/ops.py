"""Operator commands: init (and, beside it, doctor, backup, restore, status)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import envconfig, installpaths
from . import common

if TYPE_CHECKING:
    from ..config import Config

app = typer.Typer()


@app.command()
def init(
    data_dir: Annotated[
        Path, typer.Option(help="state directory (default: make install's DATADIR)")
    ] = Path(installpaths.DATA_DIR),
    admin: Annotated[str, typer.Option(help="login of the first admin")] = "root",
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the admin's password from stdin")
    ] = False,
    host: Annotated[
        str, typer.Option(help="host part of node names (default: short hostname)")
    ] = "",
    user: Annotated[
        str | None,
        typer.Option(help="service user owning the files (default: make install's SERVICE_USER)"),
    ] = installpaths.SERVICE_USER,
    force: Annotated[
        bool, typer.Option(help="rewrite config and cookie of an existing install")
    ] = False,
    dev: Annotated[bool, typer.Option(help="development mode (never in production)")] = False,
    mark_repo_root: Annotated[
        bool,
        typer.Option(
            "--mark-repo-root",
            help="only mark the configured repo root as this cluster's store (--force: "
            "re-mark one marked with another cookie)",
        ),
    ] = False,
) -> None:
    """Set up this host: data dir, repo root, cookie, config file, first admin."""
    from ..ops.init import InitError, initialize, next_steps

    if mark_repo_root:
        _mark_repo_root(force)
        return

    config_file = Path(os.environ.get("APPLIKANT_CONFIG") or envconfig.DEFAULT_CONFIG)
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    try:
        result = initialize(
            config_file,
            data_dir.resolve(),
            admin=admin,
            password=password,
            host=host,
            service_user=user,
            force=force,
            dev_mode=dev,
        )
    except InitError as exc:
        common.fail(str(exc))
    except Exception as exc:  # a store error (e.g. a bad admin login) in words
        common.fail(getattr(exc, "message", str(exc)))
    kept = " (kept: it names this data dir)" if result.config_kept else ""
    typer.echo(f"config file   {result.config_file}{kept}")
    typer.echo(f"data dir      {result.data_dir}")
    typer.echo(f"cookie        {result.cookie_file} (mode 0400)")
    from ..manager.store.engines import redact

    typer.echo(f"database      {redact(str(result.db))}")
    if result.password:
        typer.echo(f"admin         {result.admin}  password: {result.password}  (shown once)")
    else:
        typer.echo(f"admin         {result.admin}")
    for line in next_steps(result):
        typer.echo(line)


def _mark_repo_root(force: bool) -> None:
    from ..ops.init import InitError, mark_repo_root

    cfg = _config()
    root = Path(cfg.path(cfg.af.repo_root, "repos"))
    try:
        marker = mark_repo_root(root, cfg.cookie(), replace=force)
    except (InitError, envconfig.ConfigError) as exc:
        common.fail(str(exc))
    typer.echo(f"{root}: cluster {marker.cluster}, store {marker.store}")


@app.command("prepare-ab", hidden=True)
def prepare_ab() -> None:
    """What ab needs before its sandbox applies (its unit's ExecStartPre, as root):
    the build user of [builder] and the builds directory."""
    from ..ops.init import InitError, prepare_builder

    try:
        for line in prepare_builder(_config()):
            typer.echo(line)
    except InitError as exc:
        common.fail(str(exc))


def _config() -> Config:
    from .. import config as config_mod

    try:
        return config_mod.load()
    except envconfig.ConfigError as exc:
        common.fail(str(exc))


def _database(cfg: Config) -> Path | str:
    """am's database: the SQLite file, or the PostgreSQL URL as it is."""
    from ..manager.store.engines import is_url

    db = cfg.path(cfg.am.db, "am.sqlite3")
    return db if is_url(db) else Path(db)


def _refuse_while_running(cfg: Config) -> None:
    """Restore writes under the daemons' feet: they must be stopped."""
    from ..node import pmclient
    from ..node.errors import DistError

    try:
        names = pmclient.names(cfg.dist.portmapper_host, cfg.dist.portmapper_port)
    except DistError:
        return  # no portmapper: nothing of this host runs
    running = sorted(n for n in names if n in ("am", "af", "aw", "ab"))
    if running:
        common.fail(
            f"{', '.join(running)} still running on this host; stop them first "
            "(systemctl stop applikant.target)"
        )


@app.command()
def backup(dest: Annotated[Path, typer.Argument(help="new directory for the backup")]) -> None:
    """Back up am's database and every repository, while everything runs."""
    from ..frontend.daemon import repo_disk
    from ..ops.backup import BackupError
    from ..ops.backup import backup as make_backup

    cfg = _config()
    try:
        manifest = make_backup(_database(cfg), repo_disk(cfg), dest.resolve())
    except BackupError as exc:
        common.fail(str(exc))
    typer.echo(
        f"backup in {dest} (readable by its owner only): database and "
        f"{len(manifest['repos'])} repositories"
    )


@app.command()
def restore(
    src: Annotated[Path, typer.Argument(help="a directory made by applikant backup")],
    force: Annotated[
        bool,
        typer.Option(help="replace the database of a fresh `applikant init` (kept, renamed)"),
    ] = False,
) -> None:
    """Restore a backup onto a fresh installation (stop the daemons first)."""
    from ..frontend.daemon import repo_disk, write_hook_script
    from ..ops.backup import BackupError, owner_of
    from ..ops.backup import restore as do_restore

    cfg = _config()
    _refuse_while_running(cfg)
    data_dir = Path(cfg.node.data_dir)
    # Root restores for the service user: everything goes to the data dir's owner.
    owner = owner_of(data_dir) if os.geteuid() == 0 and data_dir.is_dir() else None
    try:
        write_hook_script(cfg)
        manifest = do_restore(
            src.resolve(),
            _database(cfg),
            repo_disk(cfg),
            force=force,
            owner=owner,
        )
    except BackupError as exc:
        common.fail(str(exc))
    typer.echo(f"restored the database and {len(manifest['repos'])} repositories from {src}")


@app.command()
def doctor(
    json_out: Annotated[bool, typer.Option("--json", help="JSON for scripts")] = False,
    sshd_config: Annotated[
        str, typer.Option(help="the sshd_config whose effective settings are checked")
    ] = "/etc/ssh/sshd_config",
) -> None:
    """Check what operators get wrong, and say how to fix each."""
    from .. import config as config_mod
    from ..ops.doctor import run_checks

    try:
        cfg = config_mod.load()
    except envconfig.ConfigError as exc:
        common.fail(f"{exc} (fix the config file first)")
    checks = run_checks(cfg, sshd_config)
    if json_out:
        common.emit_json([c.as_dict() for c in checks])
    else:
        for c in checks:
            typer.echo(f"{c.status.upper():5} {c.name}: {c.found}")
            if c.fix and c.status in ("fail", "warn"):
                typer.echo(f"      fix: {c.fix}")
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
