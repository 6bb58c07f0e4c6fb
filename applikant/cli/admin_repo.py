"""Manage repositories: create, list, show, rm, rename, update."""

from __future__ import annotations

from typing import Annotated

import typer

from . import common
from .admin_common import JsonOpt, YesOpt, every, fields, repos, short_time, yes_no

NAME = "repo"
app = typer.Typer(no_args_is_help=True, help=__doc__)

HEADERS = ["id", "repo", "public", "default branch", "description", "created"]


def _row(r: dict) -> list:
    return [
        r["id"],
        r["full_name"],
        yes_no(r["is_public"]),
        r["default_branch"],
        r["description"],
        short_time(r["created_at"]),
    ]


def _print(repo: dict, as_json: bool) -> None:
    if as_json:
        common.emit_json(repo)
    else:
        common.table([_row(repo)], HEADERS)


@app.command("create")
def create(
    path: Annotated[str, typer.Argument(help="owner/name (owner: a user or group)")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    public: Annotated[bool, typer.Option("--public", help="readable by everyone")] = False,
    default_branch: Annotated[str, typer.Option("--default-branch")] = "main",
    as_json: JsonOpt = False,
) -> None:
    """Create a repository (af creates it on disk when told)."""
    _print(
        repos(
            "create_repo",
            path=path,
            description=description,
            is_public=public,
            default_branch=default_branch,
        ),
        as_json,
    )


@app.command("list")
def list_(
    owner: Annotated[str | None, typer.Option("--owner", help="one owner's only")] = None,
    public: Annotated[bool, typer.Option("--public", help="public ones only")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List repositories."""
    found = every("am_repo_db", "list_repos", owner=owner, public_only=public)
    if as_json:
        common.emit_json(found)
    else:
        common.table([_row(r) for r in found], HEADERS)


@app.command("show")
def show(repo: Annotated[str, typer.Argument(help="owner/name")], as_json: JsonOpt = False) -> None:
    """Show a repository with its grants and protected branches."""
    found = repos("get_repo", repo=repo)
    grants = repos("list_grants", repo=found["full_name"])
    rules = repos("list_protected", repo=found["full_name"])
    if as_json:
        common.emit_json({**found, "grants": grants, "protected": rules})
        return
    fields(
        [
            ("id", found["id"]),
            ("repo", found["full_name"]),
            ("owner", f"{found['owner']} ({found['owner_kind']})"),
            ("public", yes_no(found["is_public"])),
            ("default branch", found["default_branch"]),
            ("description", found["description"]),
            ("created", short_time(found["created_at"])),
            ("grants", ", ".join(f"{g['grantee']}={g['level']}" for g in grants) or "-"),
            (
                "protected",
                ", ".join(
                    r["pattern"] + (" (admins only)" if r["admins_only"] else "") for r in rules
                )
                or "-",
            ),
        ]
    )


@app.command("rm")
def rm(
    repo: Annotated[str, typer.Argument(help="owner/name")],
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a repository, its grants and protections (af deletes it on disk)."""
    if not yes and not typer.confirm(f"Delete repository {repo} for good?"):
        common.fail("nothing deleted")
    removed = repos("delete_repo", repo=repo)
    if as_json:
        common.emit_json(removed)
    else:
        typer.echo(f"deleted {removed['full_name']} ({removed['id']})")


@app.command("rename")
def rename(
    repo: Annotated[str, typer.Argument(help="owner/name")],
    new_path: Annotated[str, typer.Argument(help="new owner/name")],
    as_json: JsonOpt = False,
) -> None:
    """Rename a repository, possibly to another owner."""
    _print(repos("rename_repo", repo=repo, new_path=new_path), as_json)


@app.command("update")
def update(
    repo: Annotated[str, typer.Argument(help="owner/name")],
    description: Annotated[str | None, typer.Option("--description", "-d")] = None,
    public: Annotated[bool | None, typer.Option("--public/--private")] = None,
    default_branch: Annotated[str | None, typer.Option("--default-branch")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change description, visibility or default branch."""
    if description is None and public is None and default_branch is None:
        common.fail("nothing to change: give --description, --public/--private or --default-branch")
    _print(
        repos(
            "update_repo",
            repo=repo,
            description=description,
            is_public=public,
            default_branch=default_branch,
        ),
        as_json,
    )
