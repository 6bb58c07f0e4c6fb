"""am as a daemon: `applikant start am` runs `setup` under applikant.daemon.

setup opens the database (creating and migrating it), starts the node monitor
and the subscribers' delivery, then registers the global names, in that order:
when a name appears in the cluster, its service answers. The stores are closed
when the daemon stops.

`am_observer` (the node observer): `cluster()` -> {"am", "time", "nodes": [{node,
state, since, ups, downs, last_down_reason, errors}]}, `subscribers()` -> the
current subscriptions, `report_error({"error"})` for a node to note an error
of its own against its name.
"""

from __future__ import annotations

import sqlite3
from functools import partial
from typing import Any

import trio

from applikant import config as config_mod
from applikant import envconfig
from applikant.diskspace import Reserve
from applikant.logs import EventLog
from applikant.manager import requests as rq
from applikant.manager.builds_service import BuildsService
from applikant.manager.errors import SchemaTooNew
from applikant.manager.hooks import HookApi
from applikant.manager.repos_service import RepoDb
from applikant.manager.runtime import Manager, open_manager
from applikant.manager.service import Service
from applikant.manager.users_service import UserDb
from applikant.manager.webhooks_service import WebhooksService, run_worker
from applikant.node.node import CallContext, Node, NodeDownEvent, NodeUp

log = EventLog("am")


class ObserverService(Service):
    NAME = "am_observer"
    METHODS = ("cluster", "subscribers", "report_error")

    async def cluster(self, ctx: CallContext, args: Any) -> Any:
        return self.m.observer.snapshot()

    async def subscribers(self, ctx: CallContext, args: Any) -> Any:
        return self.m.subscribers.list()

    async def report_error(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(rq.ReportError, args, self.where(ctx))
        self.m.observer.error(ctx.caller, req.error)
        log.warning("node_reported_error", peer=ctx.caller, error=req.error)
        return None


async def _watch_nodes(
    node: Node, manager: Manager, events: trio.MemoryReceiveChannel[Any]
) -> None:
    async with events:
        async for event in events:
            if isinstance(event, NodeUp):
                manager.observer.up(event.node)
            elif isinstance(event, NodeDownEvent):
                manager.observer.down(event.node, event.reason)
                manager.subscribers.remove(event.node, reason="node down")


async def _serve(
    node: Node,
    manager: Manager,
    config: config_mod.Config | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        async with trio.open_nursery() as nursery:
            events = node.monitor()
            for peer in node.nodes():
                manager.observer.up(peer)
            nursery.start_soon(_watch_nodes, node, manager, events)
            manager.subscribers.start(nursery)
            hooks = (config or config_mod.Config()).webhooks
            nursery.start_soon(
                partial(
                    run_worker,
                    manager,
                    policy=hooks.policy(),
                    settings=hooks.delivery(),
                    concurrency=hooks.concurrency,
                    poll_interval=hooks.poll_interval,
                )
            )
            builds = BuildsService(manager, (config or config_mod.Config()).builder.on_interrupt)
            await nursery.start(builds.run)
            for service in (
                UserDb(manager),
                RepoDb(manager),
                HookApi(manager),
                ObserverService(manager),
                WebhooksService(manager),
                builds,
            ):
                await node.register_global(service.NAME, service.handlers())
            counts = manager.reader.counts()
            log.info(
                "am_ready",
                db=manager.path,
                users=counts.users,
                repos=counts.repos,
                keys=counts.keys,
                schema=manager.writer.schema_version,
            )
            task_status.started()
            await trio.sleep_forever()
    finally:
        manager.close()


async def setup(node: Node, config: config_mod.Config, nursery: trio.Nursery) -> None:
    """Open am's database and serve am_user_db, am_repo_db, am_hook_api, am_observer."""
    path = config.path(config.am.db, "am.sqlite3")
    try:
        manager = open_manager(path, node)
    except (SchemaTooNew, sqlite3.Error) as exc:
        # run_daemon prints a ConfigError as one plain line and exits 1.
        log.error("start_failed", db=path, reason=str(exc))
        raise envconfig.ConfigError(f"cannot open the database {path}: {exc}") from None
    manager.reserve = Reserve([path], config.node.disk_reserve_mb)
    await nursery.start(_serve, node, manager, config)
