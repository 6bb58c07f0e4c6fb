"""Cluster commands: the portmapper daemon and what nodes see of each other."""

from __future__ import annotations

import signal
from functools import partial
from typing import Annotated, Any

import typer

from .. import envconfig
from ..node import pmclient
from ..node.errors import NodeDown
from . import common

app = typer.Typer(no_args_is_help=True)

NodeOpt = Annotated[
    str | None, typer.Option("--node", "-n", help="node to ask (default: am on this host)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON for scripts")]


@app.command()
def portmapper(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 4370)")] = None,
) -> None:
    """Run this host's portmapper (maps node names to ports)."""
    import trio

    from .. import logs
    from ..node import portmapper as pm

    raw = common.raw_config()
    settings = envconfig.dist_settings(raw)
    try:
        cookie = envconfig.cookie(raw)  # registrations must prove it
    except envconfig.ConfigError as exc:
        common.fail(str(exc))
    logs.setup()
    logs.set_node("portmapper")
    bind: str | list[str] = host or settings.portmapper_listen or settings.portmapper_host

    async def serve() -> None:
        from .. import sdnotify

        # The signal receiver first: a SIGTERM right after READY must stop us cleanly.
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                bound = await nursery.start(
                    partial(
                        pm.serve,
                        cookie=cookie,
                        max_connections=settings.portmapper_max_connections,
                        max_per_address=settings.portmapper_max_per_address,
                        idle_timeout=settings.portmapper_idle_timeout,
                    ),
                    bind,
                    port or settings.portmapper_port,
                )
                sdnotify.notify(f"READY=1\nSTATUS=portmapper on port {bound}")
                async for _ in signals:
                    sdnotify.notify("STOPPING=1")
                    nursery.cancel_scope.cancel()

    try:
        trio.run(serve)
    except OSError as exc:
        common.fail(f"cannot listen on {bind}:{port or settings.portmapper_port}: {exc.strerror}")
    except KeyboardInterrupt:
        pass


@app.command()
def names(
    host: Annotated[str | None, typer.Argument(help="host (default: this one)")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Names registered at a host's portmapper, with their ports."""
    raw = common.raw_config()
    settings = envconfig.dist_settings(raw)
    host = host or settings.portmapper_host
    try:
        found = pmclient.names(host, settings.portmapper_port)
    except NodeDown as exc:
        common.fail(f"{exc} (start it with `applikant portmapper`)")
    if json_out:
        common.emit_json(found)
    else:
        common.table(sorted(found.items()), ["name", "port"])


@app.command()
def ping(node: Annotated[str, typer.Argument(help="node, e.g. am@localhost")]) -> None:
    """Check that a node answers (pong) or say why not."""
    common.call("node", "ping", peer=node, node=node)
    typer.echo(f"pong from {node}")


@app.command()
def nodes(node: NodeOpt = None, json_out: JsonOpt = False) -> None:
    """The long-lived nodes a node is connected to."""
    peer = node or envconfig.am_node(common.raw_config())
    found = common.call("node", "nodes", peer=peer, node=peer)
    if json_out:
        common.emit_json({"node": peer, "nodes": found})
    else:
        common.table([[peer, "this node"]] + [[n, "connected"] for n in found], ["node", "state"])


@app.command("global-names")
def global_names(node: NodeOpt = None, json_out: JsonOpt = False) -> None:
    """The cluster's global names as a node sees them."""
    peer = node or envconfig.am_node(common.raw_config())
    found = common.call("node", "global_names", peer=peer, node=peer)
    if json_out:
        common.emit_json(found)
    else:
        common.table(sorted(found.items()), ["name", "node"])


def _uptime(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s"


def _af_store(node: str) -> dict[str, Any] | None:
    """An af's view of its repo root (af_status, a local name), None for other nodes."""
    if not node.startswith("af@"):
        return None
    try:
        found = common.call_quietly("af_status", "status", peer=node, node=node) or {}
    except common.CallFailed:
        return None
    return found.get("store") if isinstance(found, dict) else None


@app.command()
def status(json_out: JsonOpt = False) -> None:
    """One screen: every node am knows, up or down, its version, uptime, names and
    last errors (an af that refuses its repo root says why)."""
    from ..version import version

    raw = common.raw_config()
    am = envconfig.am_node(raw)
    cluster = common.call("am_observer", "cluster", {}, peer=am)
    rows, report = [], []
    nodes = list(cluster.get("nodes", []))  # am's own entry first
    if not any(n.get("node") == am for n in nodes):  # am lists itself; once
        nodes.insert(0, {"node": am, "state": "up", "errors": []})
    for entry in nodes:
        name = entry["node"]
        info: dict = {}
        if entry.get("state") == "up":
            try:
                info = common.call_quietly("node", "info", peer=name, node=name) or {}
                info["version"] = common.call_quietly("applikant", "version", peer=name, node=name)
            except common.CallFailed as exc:
                info.setdefault("error", str(exc))
        errors = entry.get("errors") or []
        last_error = errors[-1]["error"] if errors else (entry.get("last_down_reason") or "")
        store = _af_store(name) if entry.get("state") == "up" else None
        if store is not None:
            entry = {**entry, "store": store}
            if store.get("state") == "refused":
                last_error = f"repo root refused: {store.get('reason')}"
        rows.append(
            [
                name,
                entry.get("state", "?"),
                info.get("version", "-"),
                _uptime(info["uptime_s"]) if "uptime_s" in info else "-",
                ", ".join(info.get("own_names", [])) or "-",
                last_error[:60],
            ]
        )
        report.append({**entry, "info": info})
    if json_out:
        common.emit_json({"version": version(), "am": am, "nodes": report})
    else:
        typer.echo(f"applikant {version()} (this command)")
        common.table(rows, ["node", "state", "version", "uptime", "global names", "last error"])
