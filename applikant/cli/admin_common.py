"""What the admin command groups (user, key, group, repo, perm, branch, audit)
share: calls to am as `system` on behalf of the OS user who runs them (the
audit log says `cli:root`), the --json option, short times, reading secrets."""

from __future__ import annotations

import os
import pwd
import secrets
import sys
from typing import Annotated, Any

import typer

from . import common

SYSTEM = "system"

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for scripts")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")]


def cli_actor() -> str:
    """`cli:<the OS user running this command>`, what the audit log records."""
    try:
        name = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid with no passwd entry (a container)
        name = str(os.geteuid())
    return f"cli:{name}"


def am(service: str, method: str, **args: Any) -> Any:
    """Call am as the local admin (the cluster cookie is the credential), on
    behalf of the OS user who runs the command (`by`, for the audit log)."""
    return common.call(service, method, {"actor": SYSTEM, "by": cli_actor(), **args})


def every(service: str, method: str, **args: Any) -> list[Any]:
    """Every item of one of am's paged lists, a page of 1,000 at a time."""
    items: list[Any] = []
    cursor = None
    while True:
        page = am(service, method, **args, limit=1000, cursor=cursor)
        items += page["items"]
        cursor = page["next"]
        if cursor is None:
            return items


def users(method: str, **args: Any) -> Any:
    return am("am_user_db", method, **args)


def repos(method: str, **args: Any) -> Any:
    return am("am_repo_db", method, **args)


def short_time(value: Any) -> str:
    """`2024-05-01T12:34:56.123456Z` as `2024-05-01 12:34`."""
    if not isinstance(value, str) or len(value) < 16:
        return "" if value is None else str(value)
    return value[:10] + " " + value[11:16]


def yes_no(value: Any) -> str:
    return "yes" if value else "no"


def read_secret_stdin(what: str = "password") -> str:
    """The first line of stdin, without its newline; fails plainly when empty."""
    line = sys.stdin.readline()
    value = line.rstrip("\r\n")
    if not value:
        common.fail(f"no {what} on standard input")
    return value


def new_password() -> str:
    """A random password people can type: 20 characters from the URL-safe alphabet."""
    return secrets.token_urlsafe(15)


def fields(pairs: list[tuple[str, Any]]) -> None:
    """`key: value` lines, aligned, for `show` commands."""
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        typer.echo(f"{(key + ':').ljust(width + 1)} {'' if value is None else value}")
