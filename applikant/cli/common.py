"""What every admin command shares: config, cookie, one call through an ephemeral
node, errors shown plainly, tables for people and JSON for scripts."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import typer

from .. import envconfig
from ..node import blocking
from ..node.errors import (
    CallTimeout,
    DistError,
    NodeDown,
    NoSuchName,
    Refused,
    RemoteError,
)


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"applikant: {message}", err=True)
    raise typer.Exit(code)


def raw_config() -> dict:
    try:
        return envconfig.load_raw()
    except envconfig.ConfigError as exc:
        fail(str(exc))


def set_config(path: str | None) -> None:
    """--config wins over APPLIKANT_CONFIG for this process."""
    if path:
        os.environ["APPLIKANT_CONFIG"] = path


def explain(exc: DistError, peer: str) -> str:
    """One line for people, saying what happened and what to do."""
    if isinstance(exc, NodeDown):
        return f"{exc} (is {peer} running? `applikant names` lists this host's nodes)"
    if isinstance(exc, Refused):
        if "TLS" in str(exc):
            return f"{exc} (check [dist.tls]: this host's certificate and the cluster CA)"
        return f"{exc} (check that this machine uses the cluster's cookie)"
    if isinstance(exc, CallTimeout):
        return f"{exc}"
    if isinstance(exc, NoSuchName):
        return f"{exc} (is the daemon that provides it running?)"
    if isinstance(exc, RemoteError):
        return exc.message
    return str(exc)


class CallFailed(Exception):
    """A call did not succeed; the message is already explained for people."""


def call_quietly(
    target: str,
    method: str,
    args: Any = None,
    *,
    peer: str | None = None,
    node: str | None = None,
    timeout: float | None = None,
) -> Any:
    """One call through an ephemeral node connected to `peer` (am by default);
    CallFailed with a plain message when it does not succeed."""
    raw = raw_config()
    try:
        cookie = envconfig.cookie(raw)
        settings = envconfig.dist_settings(raw)
        peers = [peer] if peer else envconfig.am_nodes(raw)
    except envconfig.ConfigError as exc:
        raise CallFailed(str(exc)) from None
    for i, first in enumerate(peers):
        try:
            return blocking.call(
                first,
                cookie,
                target,
                method,
                args,
                node=node,
                settings=settings,
                timeout=timeout,
                prefix="cli",
            )
        except NodeDown as exc:
            # am's node is not there: its standby (`[am] standby`) may serve.
            if i + 1 == len(peers):
                raise CallFailed(explain(exc, first)) from None
        except DistError as exc:
            raise CallFailed(explain(exc, first)) from None
        except ValueError as exc:  # a bad node name
            raise CallFailed(str(exc)) from None
    raise CallFailed("no am node is configured")


def call(
    target: str,
    method: str,
    args: Any = None,
    *,
    peer: str | None = None,
    node: str | None = None,
    timeout: float | None = None,
) -> Any:
    """call_quietly, or one line on stderr and exit 1."""
    try:
        return call_quietly(target, method, args, peer=peer, node=node, timeout=timeout)
    except CallFailed as exc:
        fail(str(exc))


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """A plain aligned table, as `ls -l` or `git branch -v` would print."""
    rows = [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=False))
    typer.echo(line.rstrip())
    for r in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=False)).rstrip())
    if not rows:
        typer.echo("(none)", err=sys.stderr.isatty())
