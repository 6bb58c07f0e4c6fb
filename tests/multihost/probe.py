"""A node the multi-host tests drive through stdin and watch through stdout.

`python -m tests.multihost.probe NAME [--global G]...` runs a node with the echo
node's services (applikant.node.echo) under each global name G, prints
`READY <port>`, then one line per monitor event (`EVENT {"event": "nodeup",
"node": ...}`, `nodedown` with a reason, `lost` with the winner) and answers each
JSON request read from stdin with `REPLY {"id", "ok", "value" | "error", "message"}`.

Requests: {"id", "op": "call", "target", "method", "args"?, "node"?, "timeout"?};
"connect" {"peer"}; "register" / "unregister" {"name"}; "nodes"; "names";
"sync" {"timeout"?}. The echo node prints none of the events, hence this one.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

import trio

from applikant import envconfig, logs
from applikant.node.echo import HANDLERS
from applikant.node.errors import DistError
from applikant.node.names import BadNodeName
from applikant.node.node import NameLost, Node, NodeDownEvent, NodeUp, open_node


def say(kind: str, data: dict[str, Any]) -> None:
    print(f"{kind} {json.dumps(data, sort_keys=True)}", flush=True)


async def answer(node: Node, req: dict[str, Any]) -> Any:
    op = req["op"]
    if op == "call":
        return await node.call(
            req["target"],
            req["method"],
            req.get("args"),
            node=req.get("node"),
            timeout=req.get("timeout", 5.0),
        )
    if op == "connect":
        await node.connect(req["peer"])
        return node.nodes()
    if op == "register":
        await node.register_global(req["name"], HANDLERS)
        return req["name"]
    if op == "unregister":
        await node.unregister_global(req["name"])
        return req["name"]
    if op == "nodes":
        return node.nodes()
    if op == "names":
        return node.global_names()
    if op == "sync":
        await node.sync(req.get("timeout", 5.0))
        return node.global_names()
    raise ValueError(f"unknown op {op!r}")


async def serve_request(node: Node, req: dict[str, Any]) -> None:
    try:
        value = await answer(node, req)
    except (DistError, BadNodeName, ValueError, trio.TooSlowError) as exc:
        say(
            "REPLY",
            {"id": req.get("id"), "ok": False, "error": type(exc).__name__, "message": str(exc)},
        )
    else:
        say("REPLY", {"id": req.get("id"), "ok": True, "value": value})


async def watch(node: Node) -> None:
    async for event in node.monitor():
        if isinstance(event, NodeUp):
            say("EVENT", {"event": "nodeup", "node": event.node})
        elif isinstance(event, NodeDownEvent):
            say("EVENT", {"event": "nodedown", "node": event.node, "reason": event.reason})
        elif isinstance(event, NameLost):
            say("EVENT", {"event": "lost", "name": event.name, "winner": event.winner})


async def run(name: str, global_names: list[str]) -> None:
    raw = envconfig.load_raw()
    async with open_node(name, envconfig.cookie(raw), envconfig.dist_settings(raw)) as node:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, node)
            for g in global_names:
                await node.register_global(g, HANDLERS)
            print(f"READY {node.port}", flush=True)

            async def requests() -> None:
                stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
                buf = b""
                async for chunk in stdin:
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        nursery.start_soon(serve_request, node, json.loads(line))
                nursery.cancel_scope.cancel()  # stdin closed: the test is done with us

            nursery.start_soon(requests)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("--global", dest="globals", action="append", default=[])
    args = parser.parse_args()
    logs.setup("info")
    logs.set_node(args.name)
    try:
        trio.run(run, args.name, args.globals)
    except (DistError, envconfig.ConfigError) as exc:
        print(f"applikant: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
