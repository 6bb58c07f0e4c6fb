"""Read the audit log, newest first (filters: --actor --action --repo --since --until --limit)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer

from . import common
from .admin_common import JsonOpt, repos

NAME = "audit"
app = typer.Typer(invoke_without_command=True, help=__doc__)

HEADERS = ["id", "time", "actor", "node", "action", "repo", "details"]


def _details(d: dict) -> str:
    if "refs" in d and isinstance(d["refs"], list):
        refs = [
            f"{r.get('ref')} {str(r.get('old'))[:7]}..{str(r.get('new'))[:7]}"
            + (f" ({r['reason']})" if r.get("reason") else "")
            for r in d["refs"]
        ]
        return "; ".join(refs)
    text = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 100 else text[:97] + "..."


def _utc(value: str | None, what: str) -> str | None:
    """An ISO time; one without a zone is taken as UTC (`2024-05-01` is its midnight)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        common.fail(f"{what} {value!r} is not an ISO 8601 time (e.g. 2024-05-01T12:00Z)")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


@app.callback()
def audit(
    actor: Annotated[
        str | None,
        typer.Option("--actor", help="a login, user-42, cli:root (the CLI run by root) or system"),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option("--action", help="e.g. push (matches push and push.denied), user.add"),
    ] = None,
    repo: Annotated[str | None, typer.Option("--repo", help="owner/name")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="ISO time, e.g. 2024-05-01T00:00Z")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO time (exclusive)")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="at most this many (1-10000)")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Read the audit log, newest first."""
    query = {
        k: v
        for k, v in {
            "actor": actor,
            "action": action,
            "repo": repo,
            "since": _utc(since, "--since"),
            "until": _utc(until, "--until"),
            "limit": limit,
        }.items()
        if v is not None
    }
    entries = repos("query_audit", query=query)["items"]
    if as_json:
        common.emit_json(entries)
        return
    common.table(
        [
            [
                e["id"],
                e["time"][:19].replace("T", " "),
                e.get("actor_login") or e["actor"],
                e["node"] or "",
                e["action"],
                e["repo"] or "",
                _details(e["details"]),
            ]
            for e in entries
        ],
        HEADERS,
    )
