"""Builds: list, show, log (--follow), cancel, rerun."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from . import common
from .admin_common import JsonOpt, am, fields, short_time

NAME = "build"
app = typer.Typer(no_args_is_help=True, help=__doc__)

HEADERS = ["build", "ref", "commit", "status", "pusher", "queued", "took", "reason"]
FOLLOW_EVERY = 0.3  # seconds between looks at a running build's log
IdArg = Annotated[
    str, typer.Argument(help="the build: alice/app#12, 12 with --repo, or its id build-42")
]
RepoOpt = Annotated[
    str | None, typer.Option("--repo", help="owner/name, for a build given by its number")
]


def builds(method: str, **args: object) -> Any:
    return am("am_builds", method, **args)


def build_ref(build: str, repo: str | None) -> dict[str, str | None]:
    """The build's arguments for am; a number alone needs its repository."""
    if repo is None and build.strip().lstrip("#").isdigit():
        common.fail(
            f"which repository's build {build.strip()}? give owner/name#{build.strip().lstrip('#')}"
            " or --repo owner/name (build-42 is a build's id)"
        )
    return {"build": build, "repo": repo}


def label(b: dict) -> str:
    """`alice/app #12`: how people name a build."""
    return f"{b['repo']} #{b['number']}"


def took(b: dict) -> str:
    from datetime import datetime

    if not b.get("started_at") or not b.get("finished_at"):
        return ""
    start = datetime.fromisoformat(b["started_at"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(b["finished_at"].replace("Z", "+00:00"))
    return f"{(end - start).total_seconds():.1f}s"


def _row(b: dict) -> list:
    return [
        label(b),
        b["ref"].removeprefix("refs/heads/"),
        b["commit"][:10],
        b["status"],
        b.get("pusher_login") or b["pusher"] or "",
        short_time(b["queued_at"]),
        took(b),
        b["reason"],
    ]


@app.command("list")
def list_(
    repo: Annotated[str | None, typer.Option("--repo", help="owner/name")] = None,
    status: Annotated[
        str | None,
        typer.Option("--status", help="queued, running, succeeded, failed, cancelled, timed-out"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="at most this many")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List builds, newest first."""
    found = builds("list", repo=repo, status=status, limit=limit)["items"]
    if as_json:
        common.emit_json(found)
    else:
        common.table([_row(b) for b in found], HEADERS)


@app.command("show")
def show(build: IdArg, repo: RepoOpt = None, as_json: JsonOpt = False) -> None:
    """Show one build."""
    b = builds("get", **build_ref(build, repo))
    if as_json:
        common.emit_json(b)
        return
    assert isinstance(b, dict)
    fields(
        [
            ("build", f"{label(b)} ({b['id']})"),
            ("repo", b["repo"]),
            ("ref", b["ref"]),
            ("commit", b["commit"]),
            ("status", b["status"]),
            ("reason", b["reason"]),
            ("exit code", b["exit_code"]),
            ("queued", b["queued_at"]),
            ("started", b["started_at"]),
            ("finished", b["finished_at"]),
            ("took", took(b)),
            ("pusher", b.get("pusher_login") or b["pusher"]),
            ("attempt", b["attempt"]),
            ("runner", b["runner"]),
            ("log", f"{b['log_size']} bytes" + (" (truncated)" if b["log_truncated"] else "")),
        ]
    )


@app.command("log")
def log(
    build: IdArg,
    repo: RepoOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="print new lines until the build ends")
    ] = False,
) -> None:
    """Print a build's log; with --follow, new lines as they come until it ends.
    Exits 0 when the build succeeded (or is still going without --follow), 1 otherwise."""
    after = 0
    ref = build_ref(build, repo)
    while True:
        page = builds("log", **ref, after=after)
        assert isinstance(page, dict)
        for _, line in page["lines"]:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        after = page["next"]
        if page["lines"] and len(page["lines"]) >= 5000:
            continue  # more waiting: no pause
        if page["final"]:
            if follow:
                typer.echo(f"build {build.strip()} {page['status']}", err=True)
            raise typer.Exit(0 if page["status"] == "succeeded" else 1)
        if not follow:
            return
        time.sleep(FOLLOW_EVERY)


@app.command("cancel")
def cancel(build: IdArg, repo: RepoOpt = None, as_json: JsonOpt = False) -> None:
    """Cancel a queued or running build."""
    b = builds("cancel", **build_ref(build, repo))
    assert isinstance(b, dict)
    if as_json:
        common.emit_json(b)
    elif b["status"] == "cancelled":
        typer.echo(f"build {label(b)} cancelled")
    else:
        typer.echo(f"build {label(b)}: cancel asked; its runner {b['runner']} stops it")


@app.command("rerun")
def rerun(build: IdArg, repo: RepoOpt = None, as_json: JsonOpt = False) -> None:
    """Queue a new build of the same commit."""
    b = builds("rerun", **build_ref(build, repo))
    assert isinstance(b, dict)
    if as_json:
        common.emit_json(b)
    else:
        typer.echo(f"build {label(b)} queued")
