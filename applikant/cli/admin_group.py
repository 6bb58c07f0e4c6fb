"""Manage groups (teams): create, list, show, rm, add-member, rm-member."""

from __future__ import annotations

from typing import Annotated

import typer

from . import common
from .admin_common import JsonOpt, YesOpt, every, fields, short_time, users

NAME = "group"
app = typer.Typer(no_args_is_help=True, help=__doc__)

HEADERS = ["id", "name", "members", "description", "created"]


def _row(g: dict) -> list:
    return [
        g["id"],
        g["name"],
        ", ".join(g["members"]) or "-",
        g["description"],
        short_time(g["created_at"]),
    ]


def _print(group: dict, as_json: bool) -> None:
    if as_json:
        common.emit_json(group)
    else:
        common.table([_row(group)], HEADERS)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="group name (shares the namespace of logins)")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an empty group."""
    _print(users("create_group", name=name, description=description), as_json)


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """List groups with their members."""
    groups = every("am_user_db", "list_groups")
    if as_json:
        common.emit_json(groups)
    else:
        common.table([_row(g) for g in groups], HEADERS)


@app.command("show")
def show(name: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Show a group, its members and its repositories."""
    group = users("get_group", group=name)
    owned = every("am_repo_db", "list_repos", owner=group["name"])
    if as_json:
        common.emit_json({**group, "repos": [r["full_name"] for r in owned]})
        return
    fields(
        [
            ("id", group["id"]),
            ("name", group["name"]),
            ("description", group["description"]),
            ("created", short_time(group["created_at"])),
            ("members", ", ".join(group["members"]) or "-"),
            ("repos", ", ".join(r["full_name"] for r in owned) or "-"),
        ]
    )


@app.command("rm")
def rm(
    name: Annotated[str, typer.Argument()], yes: YesOpt = False, as_json: JsonOpt = False
) -> None:
    """Delete a group (refused while it owns repositories)."""
    if not yes and not typer.confirm(f"Delete group {name} and its grants?"):
        common.fail("nothing deleted")
    users("delete_group", group=name)
    if as_json:
        common.emit_json({"deleted": name})
    else:
        typer.echo(f"deleted group {name}")


@app.command("add-member")
def add_member(
    group: Annotated[str, typer.Argument()],
    user: Annotated[str, typer.Argument(help="login or id")],
    as_json: JsonOpt = False,
) -> None:
    """Add a user to a group."""
    _print(users("add_member", group=group, user=user), as_json)


@app.command("rm-member")
def rm_member(
    group: Annotated[str, typer.Argument()],
    user: Annotated[str, typer.Argument(help="login or id")],
    as_json: JsonOpt = False,
) -> None:
    """Remove a user from a group."""
    _print(users("remove_member", group=group, user=user), as_json)
