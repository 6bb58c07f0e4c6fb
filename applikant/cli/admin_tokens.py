"""Manage personal API tokens (for the REST API and HTTP clones): create, list, rm."""

from __future__ import annotations

from typing import Annotated

import typer

from . import common
from .admin_common import JsonOpt, short_time, users

NAME = "token"
app = typer.Typer(no_args_is_help=True, help=__doc__)

HEADERS = ["id", "user", "title", "created", "last used"]


def _row(t: dict) -> list:
    return [
        t["id"],
        t["login"],
        t["title"],
        short_time(t["created_at"]),
        short_time(t["last_used_at"]) or "never",
    ]


@app.command("create")
def create(
    user: Annotated[str, typer.Argument(help="login or id of the token's owner")],
    title: Annotated[str, typer.Option("--title", "-t", help="what will use it (ci, laptop)")],
    as_json: JsonOpt = False,
) -> None:
    """Make a token; its secret is printed this once and cannot be shown again."""
    made = users("create_token", user=user, title=title)
    if as_json:
        common.emit_json(made)
        return
    common.table([_row(made)], HEADERS)
    typer.echo(f"\ntoken (shown only now; keep it like a password):\n{made['token']}")


@app.command("list")
def list_(
    user: Annotated[str, typer.Argument(help="login or id")], as_json: JsonOpt = False
) -> None:
    """List a user's tokens (titles and dates; secrets are never kept)."""
    tokens = users("list_tokens", user=user)
    if as_json:
        common.emit_json(tokens)
    else:
        common.table([_row(t) for t in tokens], HEADERS)


@app.command("rm")
def rm(
    user: Annotated[str, typer.Argument(help="login or id of the token's owner")],
    token: Annotated[str, typer.Argument(help="token id (token-7)")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke a token at once."""
    revoked = users("revoke_token", token=token, user=user)
    if as_json:
        common.emit_json(revoked)
    else:
        typer.echo(f"revoked {revoked['id']} ({revoked['title']}) of {revoked['login']}")
