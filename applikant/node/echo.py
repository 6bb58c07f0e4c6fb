"""A node that serves `echo` and a few test methods: for benchmarks, tests and for
checking a cluster by hand (`python -m applikant.node.echo NAME`).

Global name `echo` (or --global NAME): echo(args) -> args; sleep(seconds) -> "slept";
crash() -> an unexpected exception (answered as kind "internal");
fail({kind, message}) -> a typed ServiceError.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import trio

from .. import envconfig, logs
from .errors import DistError, ServiceError
from .node import CallContext, NameLost, open_node


async def _echo(ctx: CallContext, args: Any) -> Any:
    return args


async def _sleep(ctx: CallContext, args: Any) -> str:
    await trio.sleep(float(args))
    return "slept"


async def _crash(ctx: CallContext, args: Any) -> None:
    raise RuntimeError("deliberate crash for testing")


async def _fail(ctx: CallContext, args: Any) -> None:
    raise ServiceError(args["message"], kind=args["kind"])


async def _call(ctx: CallContext, args: Any) -> Any:
    """Call onward: lets tests make one node call another's service."""
    return await ctx.node.call(
        args["target"], args["method"], args.get("args"), timeout=args.get("timeout", 5.0)
    )


HANDLERS = {"echo": _echo, "sleep": _sleep, "crash": _crash, "fail": _fail, "call": _call}


async def run(name: str, global_names: list[str], connect: list[str]) -> None:
    raw = envconfig.load_raw()
    settings = envconfig.dist_settings(raw)
    cookie = envconfig.cookie(raw)
    async with open_node(name, cookie, settings) as node:
        lost = node.monitor()
        for g in global_names:
            await node.register_global(g, HANDLERS)
        for peer in connect:
            try:
                await node.connect(peer)
            except DistError as exc:
                print(f"connect {peer} failed: {exc}", file=sys.stderr, flush=True)
        print(f"READY {node.port}", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:

                async def report() -> None:
                    async for event in lost:
                        if isinstance(event, NameLost):
                            print(f"LOST {event.name} {event.winner}", flush=True)

                nursery.start_soon(report)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name")
    parser.add_argument("--global", dest="globals", action="append", default=[])
    parser.add_argument("--connect", action="append", default=[])
    parser.add_argument("--plain", action="store_true", help="register no global name")
    args = parser.parse_args()
    logs.setup("info")
    logs.set_node(args.name)
    try:
        trio.run(run, args.name, [] if args.plain else (args.globals or ["echo"]), args.connect)
    except (DistError, envconfig.ConfigError) as exc:
        print(f"applikant: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
