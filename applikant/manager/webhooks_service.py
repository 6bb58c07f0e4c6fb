"""`am_webhooks`: hooks, their delivery log, redelivery; and the delivery worker.

Methods (args is one map; `actor` as in am_user_db):

| method | args | result | who |
|---|---|---|---|
| add_hook | repo (None: site-wide), url, events, secret?, active?, ping? | Webhook + secret | repo admins; site admins for site-wide |
| list_hooks | repo (None: site-wide) | [Webhook] | the same |
| remove_hook | hook | Webhook | the same, for the hook's scope |
| list_deliveries | hook, limit? | [Delivery with its attempts] | the same |
| get_delivery | delivery | Delivery | the same |
| redeliver | delivery | Delivery (the new one) | the same |

A repository's hooks are for those who administer it; someone who cannot even
read it is told it does not exist (Manager.require_repo). The secret is in the
answer to add_hook only.

The worker (`run_worker`) is applikant.webhooks.deliver_pending over the
store (webhooks_store.StoreQueue), in am's nursery. It is woken after every
write that made deliveries (a push, a new repository, add_hook, redeliver...)
and otherwise sleeps until the next retry falls due; on start it picks up
whatever was pending when am last stopped, or died.
"""

from __future__ import annotations

from typing import Any

import trio

from applikant.logs import EventLog
from applikant.manager import requests as rq
from applikant.manager.base import Event
from applikant.manager.errors import NotFound
from applikant.manager.runtime import Actor, Manager
from applikant.manager.service import Service, dump
from applikant.manager.webhooks_store import StoreQueue
from applikant.node.node import CallContext
from applikant.webhooks import DeliverySettings, RetryPolicy, deliver_pending

log = EventLog("am")

RESTART_AFTER = 5.0  # seconds before the worker runs again after a store error


class AddHook(rq.Mutation):
    repo: str | None = None
    url: str
    events: list[str] = ["push"]
    secret: str | None = None
    active: bool = True
    ping: bool = True


class HookScope(rq.Read):
    repo: str | None = None


class HookRef(rq.Mutation):
    hook: str


class HookRead(rq.Read):
    hook: str
    limit: int = 50


class DeliveryRef(rq.Read):
    delivery: str


class Redeliver(rq.Mutation):
    delivery: str


class Waker:
    """Wakes the worker after a write that made deliveries (Manager.listeners)."""

    def __init__(self, manager: Manager) -> None:
        self._writer = manager.writer
        self._seen = manager.writer.queued_deliveries
        self._event = trio.Event()

    def __call__(self, events: list[Event]) -> None:
        if self._writer.queued_deliveries != self._seen:
            self._seen = self._writer.queued_deliveries
            self._event.set()

    def wake(self) -> trio.Event:
        """The event the worker waits on next (a fresh one once it fired)."""
        if self._event.is_set():
            self._event = trio.Event()
        return self._event


async def run_worker(
    manager: Manager,
    *,
    policy: RetryPolicy,
    settings: DeliverySettings,
    concurrency: int = 4,
    poll_interval: float = 30.0,
) -> None:
    """Deliver for ever (until cancelled with am's nursery)."""
    waker = Waker(manager)
    manager.listeners.append(waker)
    queue = StoreQueue(manager.reader, manager.writer, manager.write_reserved)
    log.info("webhooks_worker_started", next_due=str(queue.reader.next_delivery_due()))
    while True:
        try:
            await deliver_pending(
                queue,
                policy=policy,
                settings=settings,
                concurrency=concurrency,
                poll_interval=poll_interval,
                wake=waker.wake,
            )
        except Exception as exc:
            # The store failed (disk full, locked too long): am's other services
            # go on; the deliveries wait in the database for the next round.
            log.error("webhooks_worker_failed", error=f"{type(exc).__name__}: {exc}")
            await trio.sleep(RESTART_AFTER)


class WebhooksService(Service):
    NAME = "am_webhooks"
    METHODS = (
        "add_hook",
        "list_hooks",
        "remove_hook",
        "list_deliveries",
        "get_delivery",
        "redeliver",
    )

    def _require_scope(self, actor: Actor, repo: str | None) -> None:
        if repo is None:
            self.m.require_admin(actor, "manage site-wide webhooks")
        else:
            self.m.require_repo(actor, repo, "admin")

    def _require_hook(self, actor: Actor, hook: str) -> None:
        """Authorise for the hook's scope; a hook of a repository the actor cannot
        administer is reported as not found, whatever it is."""
        found = self.m.reader.get_hook(hook)
        try:
            self._require_scope(actor, found.repo)
        except NotFound:
            raise NotFound(f"no hook {hook}") from None

    async def add_hook(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(AddHook, args, self.where(ctx))
        self._require_scope(self.m.actor(req.actor), req.repo)
        hook, _ = await self.m.write(
            self.m.writer.add_hook,
            req.repo,
            req.url,
            req.events,
            secret=req.secret,
            active=req.active,
            ping=req.ping,
            actor=req.actor,
            node=ctx.caller,
        )
        log.info("hook_added", hook=hook.id, repo=hook.repo or "(site)", url=hook.url)
        return dump(hook)

    async def list_hooks(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(HookScope, args, self.where(ctx))
        self._require_scope(self.m.actor(req.actor), req.repo)
        return dump(self.m.reader.list_hooks(req.repo))

    async def remove_hook(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(HookRef, args, self.where(ctx))
        self._require_hook(self.m.actor(req.actor), req.hook)
        hook, _ = await self.m.write(
            self.m.writer.remove_hook, req.hook, actor=req.actor, node=ctx.caller
        )
        return dump(hook)

    async def list_deliveries(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(HookRead, args, self.where(ctx))
        self._require_hook(self.m.actor(req.actor), req.hook)
        return dump(await self.m.bulk_read(self.m.bulk.list_deliveries, req.hook, req.limit))

    async def get_delivery(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(DeliveryRef, args, self.where(ctx))
        delivery = self.m.reader.get_delivery(req.delivery)
        self._require_hook(self.m.actor(req.actor), delivery.hook)
        return dump(delivery)

    async def redeliver(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(Redeliver, args, self.where(ctx))
        delivery = self.m.reader.get_delivery(req.delivery)
        self._require_hook(self.m.actor(req.actor), delivery.hook)
        made, _ = await self.m.write(
            self.m.writer.redeliver, req.delivery, actor=req.actor, node=ctx.caller
        )
        return dump(made)
