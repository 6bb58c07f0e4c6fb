"""Running a component as a daemon: config, logs, its node, readiness, shutdown.

A component gives `run_daemon` a `setup(node, config, nursery)` coroutine that
registers its services and starts its tasks; once setup returns, the daemon tells
systemd READY=1 (and any test waiting on NOTIFY_SOCKET). SIGTERM or SIGINT:
STOPPING=1, global names withdrawn, running handlers get `grace` seconds, then
everything is cancelled. Every daemon's node answers `applikant.version` (a
local name), which `applikant status` shows.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable

import trio

from . import config as config_mod
from . import envconfig, logs, sdnotify
from .node.errors import DistError
from .node.node import Node, open_node

Setup = Callable[[Node, config_mod.Config, trio.Nursery], Awaitable[None]]

log = logs.EventLog("daemon")


async def _watchdog(interval: float) -> None:
    while True:
        sdnotify.notify("WATCHDOG=1")
        await trio.sleep(interval)


async def _version(ctx: object, args: object) -> str:
    from .version import version

    return version()


async def serve(component: str, cfg: config_mod.Config, setup: Setup, grace: float = 2.0) -> None:
    name = cfg.node_name(component)
    logs.set_node(name)
    async with open_node(name, cfg.cookie(), cfg.dist) as node:
        node.register_local("applikant", {"version": _version})
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with trio.open_nursery() as nursery:
                await setup(node, cfg, nursery)
                interval = sdnotify.watchdog_interval()
                if interval:
                    nursery.start_soon(_watchdog, interval)
                sdnotify.notify(f"READY=1\nSTATUS={component} serving as {name}")
                log.info("ready", daemon=component, port=node.port)
                async for signum in signals:
                    log.info("stopping", signal=signal.Signals(signum).name)
                    sdnotify.notify("STOPPING=1")
                    await node.retire(grace)
                    nursery.cancel_scope.cancel()
                    break


def run_daemon(component: str, setup: Setup, config_path: str | None = None) -> None:
    """Entry point of a daemon process; exits 1 with one clear line on a start error."""
    try:
        cfg = config_mod.load(config_path)
    except envconfig.ConfigError as exc:
        print(f"applikant {component}: {exc}", file=sys.stderr)
        sys.exit(1)
    logs.setup(cfg.node.log_level)
    try:
        try:
            trio.run(serve, component, cfg, setup)
        except BaseExceptionGroup as group:  # a lone start error, not a group of them
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
    except (DistError, envconfig.ConfigError, OSError) as exc:
        log.error("start_failed", daemon=component, reason=str(exc))
        print(f"applikant {component}: {exc}", file=sys.stderr)
        sys.exit(1)
