"""Manage protected branches: protect, unprotect, list."""

from __future__ import annotations

from typing import Annotated

import typer

from . import common
from .admin_common import JsonOpt, repos, short_time, yes_no

NAME = "branch"
app = typer.Typer(no_args_is_help=True, help=__doc__)

HEADERS = ["repo", "pattern", "admins only", "created"]


def _row(r: dict) -> list:
    return [r["repo"], r["pattern"], yes_no(r["admins_only"]), short_time(r["created_at"])]


@app.command("protect")
def protect(
    repo: Annotated[str, typer.Argument(help="owner/name")],
    pattern: Annotated[str, typer.Argument(help="branch name or pattern: main, release/*")],
    admins_only: Annotated[
        bool, typer.Option("--admins-only", help="only repository admins may push to it")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Protect matching branches: no force-push, no deletion."""
    rule = repos("protect_branch", repo=repo, pattern=pattern, admins_only=admins_only)
    if as_json:
        common.emit_json(rule)
    else:
        common.table([_row(rule)], HEADERS)


@app.command("unprotect")
def unprotect(
    repo: Annotated[str, typer.Argument(help="owner/name")],
    pattern: Annotated[str, typer.Argument(help="exactly as protected")],
    as_json: JsonOpt = False,
) -> None:
    """Remove a protection rule."""
    repos("unprotect_branch", repo=repo, pattern=pattern)
    if as_json:
        common.emit_json({"repo": repo, "pattern": pattern, "protected": False})
    else:
        typer.echo(f"{repo}: {pattern} is no longer protected")


@app.command("list")
def list_(
    repo: Annotated[str, typer.Argument(help="owner/name")], as_json: JsonOpt = False
) -> None:
    """List the protection rules of a repository."""
    found = repos("list_protected", repo=repo)
    if as_json:
        common.emit_json(found)
    else:
        common.table([_row(r) for r in found], HEADERS)
