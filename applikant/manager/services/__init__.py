"""am's global services, and the one place they are started and registered.

| name | module | serves |
|---|---|---|
| `am_user_db` | user_db | users, SSH keys, API tokens, groups, change subscriptions |
| `am_sessions` | sessions | web sessions: login, resolve, list, end (so every aw agrees) |
| `am_repo_db` | repo_db | repositories, permissions, protected branches, access decisions, the audit log |
| `am_hook_api` | hook_api | the verdict on a push (pre-receive, update) and its record (post-receive) |
| `am_builds` | builds | the build queue, for people and for runners (ab) |
| `am_webhooks` | webhooks | hooks, their delivery log, redelivery (and the delivery worker) |
| `am_observer` | observer | the nodes am has seen, subscriptions, errors nodes report |

Each method's args and answer are modelled in applikant.schema, one module
per service; `base.Service` checks the args against them before a method runs.
"""

from __future__ import annotations

from functools import partial

import trio

from applikant import config as config_mod
from applikant.links import Links
from applikant.manager.runtime import Manager
from applikant.manager.services.base import Service
from applikant.manager.services.builds import BuildsService
from applikant.manager.services.hook_api import HookApi
from applikant.manager.services.observer import ObserverService, watch_nodes
from applikant.manager.services.repo_db import RepoDb
from applikant.manager.services.retention import run_pruner
from applikant.manager.services.sessions import SessionsService
from applikant.manager.services.user_db import UserDb
from applikant.manager.services.webhooks import WebhooksService, run_worker
from applikant.node.node import Node

__all__ = ["NAMES", "Service", "start", "stop"]


#: Every global name am registers (what a standby takes over, and gives up).
NAMES = (
    UserDb.NAME,
    RepoDb.NAME,
    HookApi.NAME,
    ObserverService.NAME,
    WebhooksService.NAME,
    BuildsService.NAME,
)


async def start(
    manager: Manager,
    config: config_mod.Config,
    nursery: trio.Nursery,
    *,
    stamp: float | None = None,
) -> None:
    """Start what the services run in the background (the node watch, the
    subscribers' delivery, the webhook worker, the pruner, the builds' runner watch), then
    register every global name, in that order: when a name appears in the
    cluster, its service answers. `stamp` (an am holding a lease: minus its
    epoch) takes the names over from an am with an older lease."""
    node = manager.node
    manager.links = manager.writer.webhooks.links = Links.from_config(config)
    events = node.monitor()
    for peer in node.nodes():
        manager.observer.up(peer)
    nursery.start_soon(watch_nodes, manager, events)
    manager.subscribers.start(nursery)
    hooks = config.webhooks
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
    nursery.start_soon(
        partial(
            run_pruner,
            manager,
            keep_builds=config.am.keep_builds,
            keep_days=config.am.keep_deliveries_days,
            interval=config.am.prune_interval,
        )
    )
    builds = BuildsService(manager, config.builder.on_interrupt)
    await nursery.start(builds.run)
    services: list[Service] = [
        UserDb(manager),
        SessionsService(manager),
        RepoDb(manager),
        HookApi(manager),
        ObserverService(manager),
        WebhooksService(manager),
        builds,
    ]
    for service in services:
        manager.handlers[service.NAME] = service.handlers()
    for service in services:
        await node.register_global(service.NAME, manager.handlers[service.NAME], stamp=stamp)


async def stop(node: Node) -> None:
    """Withdraw am's global names (an am that lost its lease)."""
    for name in NAMES:
        await node.unregister_global(name)
