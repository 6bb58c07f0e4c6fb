"""Manage repository permissions: grant, revoke, list."""

from __future__ import annotations

from typing import Annotated

import typer

from . import common
from .admin_common import JsonOpt, repos

NAME = "perm"
app = typer.Typer(no_args_is_help=True, help=__doc__)

HEADERS = ["repo", "grantee", "kind", "level"]


def _row(g: dict) -> list:
    return [g["repo"], g["grantee"], g["grantee_kind"], g["level"]]


@app.command("grant")
def grant(
    repo: Annotated[str, typer.Argument(help="owner/name")],
    grantee: Annotated[str, typer.Argument(help="user or group")],
    level: Annotated[str, typer.Argument(help="read, write or admin")],
    as_json: JsonOpt = False,
) -> None:
    """Give a user or group read, write or admin access (replaces an earlier grant)."""
    found = repos("grant", repo=repo, grantee=grantee, level=level)
    if as_json:
        common.emit_json(found)
    else:
        common.table([_row(found)], HEADERS)


@app.command("revoke")
def revoke(
    repo: Annotated[str, typer.Argument(help="owner/name")],
    grantee: Annotated[str, typer.Argument(help="user or group")],
    as_json: JsonOpt = False,
) -> None:
    """Remove an explicit grant (ownership and site admin rights stay)."""
    repos("revoke", repo=repo, grantee=grantee)
    if as_json:
        common.emit_json({"repo": repo, "grantee": grantee, "revoked": True})
    else:
        typer.echo(f"revoked the grant of {grantee} on {repo}")


@app.command("list")
def list_(
    repo: Annotated[str, typer.Argument(help="owner/name")], as_json: JsonOpt = False
) -> None:
    """List the explicit grants on a repository."""
    found = repos("list_grants", repo=repo)
    if as_json:
        common.emit_json(found)
    else:
        common.table([_row(g) for g in found], HEADERS)
