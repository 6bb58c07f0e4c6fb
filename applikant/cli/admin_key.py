"""Manage SSH keys: add (from a file or stdin), list, rm."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from . import common
from .admin_common import JsonOpt, every, short_time, users

NAME = "key"
app = typer.Typer(no_args_is_help=True, help=__doc__)

HEADERS = ["id", "user", "type", "bits", "fingerprint", "title", "created", "last used"]
MAX_KEY_FILE = 64 * 1024


def _row(k: dict) -> list:
    return [
        k["id"],
        k["login"],
        k["key_type"],
        k["bits"],
        k["fingerprint"],
        k["title"],
        short_time(k["created_at"]),
        short_time(k["last_used_at"]) or "never",
    ]


def _read_key(source: str) -> str:
    if source == "-":
        text = sys.stdin.read(MAX_KEY_FILE + 1)
    else:
        try:
            with open(source, encoding="utf-8", errors="replace") as f:
                text = f.read(MAX_KEY_FILE + 1)
        except OSError as exc:
            common.fail(f"cannot read {source}: {exc.strerror or exc}")
    if len(text) > MAX_KEY_FILE:
        common.fail(f"{source} is too large to be a public key")
    text = text.strip()
    if not text:
        common.fail(f"{'standard input' if source == '-' else source} is empty")
    return text


@app.command("add")
def add(
    user: Annotated[str, typer.Argument(help="login or id of the key's owner")],
    source: Annotated[str, typer.Argument(help="public key file (id_ed25519.pub), or - for stdin")],
    title: Annotated[str | None, typer.Option("--title", help="default: the key's comment")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a public key to an account."""
    key = users("add_key", user=user, key=_read_key(source), title=title)
    if as_json:
        common.emit_json(key)
    else:
        common.table([_row(key)], HEADERS)


@app.command("list")
def list_(
    user: Annotated[str | None, typer.Argument(help="login or id; all keys if left out")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the keys of one account, or every key of every enabled account."""
    keys = every("am_user_db", "list_keys", user=user) if user else every("am_user_db", "all_keys")
    if as_json:
        common.emit_json(keys)
    else:
        common.table([_row(k) for k in keys], HEADERS)


@app.command("rm")
def rm(
    key: Annotated[str, typer.Argument(help="key id (key-7) or fingerprint (SHA256:...)")],
    user: Annotated[
        str | None, typer.Option("--user", help="only if it belongs to this user")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Remove a key."""
    removed = users("remove_key", key=key, user=user)
    if as_json:
        common.emit_json(removed)
    else:
        typer.echo(f"removed {removed['id']} ({removed['fingerprint']}) of {removed['login']}")
