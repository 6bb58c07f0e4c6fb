"""Manage webhooks (per repository or site-wide): add, list, edit, test, rm, deliveries, redeliver."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

import typer

from . import common
from .admin_common import JsonOpt, am, short_time

NAME = "hook"
app = typer.Typer(no_args_is_help=True, help=__doc__)

EVENT_NAMES = "push, repo_created, repo_deleted, build_finished"
HEADERS = ["id", "repo", "url", "events", "active", "last delivery"]


def hooks(method: str, **args: Any) -> Any:
    return am("am_webhooks", method, **args)


def _row(h: dict) -> list:
    return [
        h["id"],
        h["repo"] or "(site)",
        h["url"],
        ",".join(h["events"]),
        "yes" if h["active"] else "no",
        h.get("last_status") or "",
    ]


def _scope(repo: str | None, site: bool) -> str | None:
    if repo is None and not site:
        common.fail("no repository given: give owner/name, or --site for the site-wide hooks")
    if repo is not None and site:
        common.fail(f"both a repository ({repo}) and --site given: give one of them")
    return repo


@app.command("add")
def add(
    target: Annotated[
        list[str],
        typer.Argument(
            metavar="REPO URL | --site URL",
            help="owner/name (or --site) and the http:// or https:// URL that receives the POSTs",
        ),
    ],
    site: Annotated[
        bool, typer.Option("--site", help="a site-wide hook (every repository)")
    ] = False,
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event", "-e", help=f"an event to send (repeat): {EVENT_NAMES}; default push"
        ),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option("--secret", help="the signing secret; default: a random one, printed once"),
    ] = None,
    inactive: Annotated[bool, typer.Option("--inactive", help="make it switched off")] = False,
    no_ping: Annotated[bool, typer.Option("--no-ping", help="do not send a ping now")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a hook; its secret is printed this once (deliveries are signed with it)."""
    if site and len(target) != 1:
        common.fail(f"--site takes the URL only, but {len(target)} arguments were given")
    if not site and len(target) == 1:
        common.fail(
            f"only one argument ({target[0]}): give the repository and the URL "
            "(owner/name URL), or --site URL"
        )
    if not site and len(target) != 2:
        common.fail(f"{len(target)} arguments: give the repository and the URL (owner/name URL)")
    repo, url = (None, target[0]) if site else (target[0], target[1])
    made = hooks(
        "add_hook",
        repo=repo,
        url=url,
        events=event or ["push"],
        secret=secret,
        active=not inactive,
        ping=not no_ping,
    )
    if as_json:
        common.emit_json(made)
        return
    common.table([_row(made)], HEADERS)
    if secret is None:
        typer.echo(
            f"\nsecret (shown only now; the receiver checks "
            f"X-Applikant-Signature-256 with it):\n{made['secret']}"
        )


@app.command("list")
def list_(
    repo: Annotated[str | None, typer.Argument(help="owner/name")] = None,
    site: Annotated[bool, typer.Option("--site", help="the site-wide hooks")] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the hooks of a repository, or the site-wide ones."""
    found = hooks("list_hooks", repo=_scope(repo, site))
    if as_json:
        common.emit_json(found)
    else:
        common.table([_row(h) for h in found], HEADERS)


@app.command("edit")
def edit(
    hook: Annotated[str, typer.Argument(help="hook id (hook-7)")],
    url: Annotated[str | None, typer.Option("--url", help="a new URL")] = None,
    event: Annotated[
        list[str] | None,
        typer.Option("--event", "-e", help=f"the events, replacing them (repeat): {EVENT_NAMES}"),
    ] = None,
    secret: Annotated[str | None, typer.Option("--secret", help="a new signing secret")] = None,
    new_secret: Annotated[
        bool, typer.Option("--new-secret", help="a new random secret, printed once")
    ] = False,
    active: Annotated[
        bool | None,
        typer.Option("--active/--inactive", help="switch the hook on or off"),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a hook's URL, events, secret, or switch it on or off."""
    if secret is not None and new_secret:
        common.fail("both --secret and --new-secret given: give one of them")
    if new_secret:
        secret = secrets.token_hex(32)  # as am makes them
    if url is None and event is None and secret is None and active is None:
        common.fail(
            "nothing to change: give --url, --event, --secret or --new-secret, "
            "or --active/--inactive"
        )
    changed = hooks("update_hook", hook=hook, url=url, events=event, secret=secret, active=active)
    if as_json:
        common.emit_json({**changed, "secret": secret} if new_secret else changed)
        return
    common.table([_row(changed)], HEADERS)
    if new_secret:
        typer.echo(f"\nnew secret (shown only now):\n{secret}")


@app.command("test")
def test(
    hook: Annotated[str, typer.Argument(help="hook id (hook-7)")], as_json: JsonOpt = False
) -> None:
    """Send a test delivery (a ping) now; `hook deliveries` shows its answer."""
    made = hooks("test_hook", hook=hook)
    if as_json:
        common.emit_json(made)
    else:
        typer.echo(f"queued {made['id']} (ping to {hook}); see: applikant hook deliveries {hook}")


@app.command("rm")
def rm(
    hook: Annotated[str, typer.Argument(help="hook id (hook-7)")], as_json: JsonOpt = False
) -> None:
    """Remove a hook with its delivery log."""
    removed = hooks("remove_hook", hook=hook)
    if as_json:
        common.emit_json(removed)
    else:
        typer.echo(f"removed {removed['id']} ({removed['url']})")


def _attempt_text(a: dict) -> str:
    what = str(a["status_code"]) if a["status_code"] is not None else a["outcome"]
    extra = a["error"] or (f"-> {a['location']}" if a.get("location") else "")
    return (
        f"#{a['number']} {short_time(a['started_at'])} {what} {a['duration']:.2f}s {extra}".rstrip()
    )


@app.command("deliveries")
def deliveries(
    hook: Annotated[str, typer.Argument(help="hook id (hook-7)")],
    limit: Annotated[int, typer.Option("--limit", "-n", help="newest this many")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """A hook's deliveries, newest first, with every attempt's result."""
    found = hooks("list_deliveries", hook=hook, limit=limit)["items"]
    if as_json:
        common.emit_json(found)
        return
    rows = []
    for d in found:
        last = _attempt_text(d["log"][-1]) if d["log"] else ""
        rows.append(
            [d["id"], d["event"], d["status"], d["attempts"], short_time(d["created_at"]), last]
        )
    common.table(rows, ["delivery", "event", "status", "attempts", "created", "last attempt"])


@app.command("redeliver")
def redeliver(
    delivery: Annotated[str, typer.Argument(help="delivery id (a UUID)")], as_json: JsonOpt = False
) -> None:
    """Send a delivery again: a new delivery with the same body, due now."""
    made = hooks("redeliver", delivery=delivery)
    if as_json:
        common.emit_json(made)
    else:
        typer.echo(f"queued {made['id']} ({made['event']}, again of {made['redelivery_of']})")
