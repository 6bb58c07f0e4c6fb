"""Manage accounts: add, list, show, edit, disable, enable, passwd, admin, rm."""

from __future__ import annotations

from typing import Annotated

import typer

from . import common
from .admin_common import (
    JsonOpt,
    YesOpt,
    every,
    fields,
    new_password,
    read_secret_stdin,
    short_time,
    users,
    yes_no,
)

NAME = "user"
app = typer.Typer(no_args_is_help=True, help=__doc__)


def _row(u: dict) -> list:
    state = "disabled" if u["disabled"] else "active"
    return [
        u["id"],
        u["login"],
        u["display_name"],
        u["email"],
        yes_no(u["is_admin"]),
        state,
        short_time(u["created_at"]),
    ]


HEADERS = ["id", "login", "name", "email", "admin", "state", "created"]


@app.command("add")
def add(
    login: Annotated[str, typer.Argument(help="login name (also the owner name of their repos)")],
    name: Annotated[str, typer.Option("--name", help="display name")] = "",
    email: Annotated[str, typer.Option("--email")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="make a site admin")] = False,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="read the password from the first line of stdin"),
    ] = False,
    no_password: Annotated[
        bool, typer.Option("--no-password", help="SSH keys only, no web login")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add an account. Without --password-stdin or --no-password, a password is
    generated and printed once."""
    if password_stdin and no_password:
        common.fail("--password-stdin and --no-password exclude each other")
    generated = None
    if password_stdin:
        password: str | None = read_secret_stdin()
    elif no_password:
        password = None
    else:
        password = generated = new_password()
    user = users(
        "add_user", login=login, display_name=name, email=email, password=password, is_admin=admin
    )
    if as_json:
        common.emit_json({**user, "password": generated} if generated else user)
        return
    common.table([_row(user)], HEADERS)
    if generated:
        typer.echo(f"password: {generated}  (shown once; change it with `applikant user passwd`)")


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List all accounts."""
    found = every("am_user_db", "list_users")
    if as_json:
        common.emit_json(found)
        return
    common.table([_row(u) for u in found], HEADERS)


@app.command("show")
def show(
    user: Annotated[str, typer.Argument(help="login or id (user-42)")], as_json: JsonOpt = False
) -> None:
    """Show one account with its keys and groups."""
    found = users("get_user", user=user)
    keys = every("am_user_db", "list_keys", user=found["id"])
    groups = users("groups_of", user=found["id"])
    if as_json:
        common.emit_json({**found, "keys": keys, "groups": groups})
        return
    fields(
        [
            ("id", found["id"]),
            ("login", found["login"]),
            ("name", found["display_name"]),
            ("email", found["email"]),
            ("admin", yes_no(found["is_admin"])),
            ("state", "disabled" if found["disabled"] else "active"),
            ("password", "set" if found["has_password"] else "none (SSH keys only)"),
            ("created", short_time(found["created_at"])),
            ("groups", ", ".join(groups) or "-"),
        ]
    )
    typer.echo("")
    common.table(
        [[k["id"], k["key_type"], k["bits"], k["fingerprint"], k["title"]] for k in keys],
        ["key", "type", "bits", "fingerprint", "title"],
    )


@app.command("edit")
def edit(
    user: Annotated[str, typer.Argument(help="login or id")],
    name: Annotated[str | None, typer.Option("--name", help="a new display name")] = None,
    email: Annotated[str | None, typer.Option("--email", help="a new email ('' clears it)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an account's display name or email."""
    if name is None and email is None:
        common.fail("nothing to change: give --name or --email (or both)")
    _print(users("update_user", user=user, display_name=name, email=email), as_json)


@app.command("rm")
def rm(
    user: Annotated[str, typer.Argument(help="login or id")],
    transfer_to: Annotated[
        str | None,
        typer.Option(
            "--transfer-to",
            help="a user or group that takes the account's repositories first",
        ),
    ] = None,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete an account with its keys, tokens, memberships and grants. Refused
    while it owns repositories, unless --transfer-to gives them a new owner."""
    if not yes:
        found = users("get_user", user=user)
        what = f" and move its repositories to {transfer_to}" if transfer_to else ""
        if not typer.confirm(f"delete {found['login']} ({found['id']}){what}?"):
            common.fail("nothing was deleted")
    done = users("delete_user", user=user, transfer_to=transfer_to)
    if as_json:
        common.emit_json(done)
        return
    gone = done["user"]
    typer.echo(f"deleted {gone['login']} ({gone['id']})")
    for full in done["transferred"]:
        typer.echo(f"  repository now {full}")


@app.command("disable")
def disable(
    user: Annotated[str, typer.Argument(help="login or id")], as_json: JsonOpt = False
) -> None:
    """Lock an account out (no login, no SSH); its keys are kept."""
    _print(users("disable_user", user=user), as_json)


@app.command("enable")
def enable(
    user: Annotated[str, typer.Argument(help="login or id")], as_json: JsonOpt = False
) -> None:
    """Let a disabled account in again."""
    _print(users("enable_user", user=user), as_json)


@app.command("admin")
def admin(
    user: Annotated[str, typer.Argument(help="login or id")],
    revoke: Annotated[bool, typer.Option("--revoke", help="take the rights away")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make an account a site admin (or, with --revoke, no longer one)."""
    _print(users("set_admin", user=user, is_admin=not revoke), as_json)


@app.command("passwd")
def passwd(
    user: Annotated[str, typer.Argument(help="login or id")],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="read the password from the first line of stdin"),
    ] = False,
    clear: Annotated[bool, typer.Option("--clear", help="remove the password")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Set a new password (generated and printed once unless --password-stdin)."""
    if password_stdin and clear:
        common.fail("--password-stdin and --clear exclude each other")
    generated = None
    if clear:
        password: str | None = None
    elif password_stdin:
        password = read_secret_stdin()
    else:
        password = generated = new_password()
    users("set_password", user=user, password=password)
    if as_json:
        common.emit_json({"user": user, "password": generated, "cleared": clear})
    elif generated:
        typer.echo(f"password: {generated}  (shown once)")
    else:
        typer.echo("password removed" if clear else "password changed")


def _print(user: dict, as_json: bool) -> None:
    if as_json:
        common.emit_json(user)
    else:
        common.table([_row(user)], HEADERS)
