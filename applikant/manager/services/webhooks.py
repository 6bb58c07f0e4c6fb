"""`am_webhooks`: hooks, their delivery log, redelivery; and the delivery worker.

Methods (args is one map; `actor` as in am_user_db):

| method | args | result | who |
|---|---|---|---|
| add_hook | repo (None: site-wide), url, events, secret?, active?, ping? | Webhook + secret | repo admins; site admins for site-wide |
| list_hooks | repo (None: site-wide) | [Webhook] | the same |
| get_hook | hook | Webhook | the same, for the hook's scope |
| update_hook | hook, url?, secret?, events?, active? | Webhook | the same |
| test_hook | hook | Delivery (a ping, due now) | the same |
| remove_hook | hook | Webhook | the same |
| list_deliveries | hook, limit?, cursor? | page of Delivery with its attempts | the same |
| get_delivery | delivery | Delivery | the same |
| redeliver | delivery | Delivery (the new one) | the same |

A repository's hooks are for those who administer it; someone who cannot even
read it is told it does not exist (Manager.require_repo). The secret is in the
answer to add_hook only. The receivers' answers in the delivery log are shown
whole (as kept: `[webhooks] max_response`) to site admins only, and cut to
their first SHOWN_RESPONSE characters for everyone else.

The worker (`run_worker`) is applikant.webhooks.deliver_pending over the
store (`StoreQueue`), in am's nursery. It is woken after every
write that made deliveries (a push, a new repository, add_hook, redeliver...)
and otherwise sleeps until the next retry falls due; on start it picks up
whatever was pending when am last stopped, or died.

The models of the args and answers are applikant.schema.webhooks (AM_WEBHOOKS).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

import trio

from applikant.logs import EventLog
from applikant.manager.errors import NotFound
from applikant.manager.runtime import Actor, Manager
from applikant.manager.services.base import Service, dump
from applikant.manager.store.core import Event
from applikant.manager.store.webhooks import Webhooks
from applikant.node.node import CallContext
from applikant.schema import webhooks as s
from applikant.schema.webhooks import Webhook
from applikant.webhooks import (
    Attempt,
    DeliverySettings,
    PendingDelivery,
    RetryPolicy,
    deliver_pending,
)
from applikant.webhooks.deliver import shown_response

log = EventLog("am")

RESTART_AFTER = 5.0  # seconds before the worker runs again after a store error


class StoreQueue:
    """`applikant.webhooks.DeliveryQueue` over am's stores: reads on `reader`
    (quick indexed lookups, on the trio thread), attempts recorded through
    `write` (am's Manager.write_reserved: one writer at a time, in a worker
    thread; deliveries already queued go on below the disk reserve)."""

    def __init__(
        self, reader: Webhooks, writer: Webhooks, write: Callable[..., Awaitable[Any]]
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._write = write

    async def due(self, now: datetime, limit: int) -> list[PendingDelivery]:
        return self.reader.due(now, limit)

    async def next_due(self) -> datetime | None:
        return self.reader.next_due()

    async def record(
        self, delivery_id: str, attempt: Attempt, next_attempt_at: datetime | None
    ) -> None:
        await self._write(self.writer.record_attempt, delivery_id, attempt, next_attempt_at)


class Waker:
    """Wakes the worker after a write that made deliveries (Manager.listeners)."""

    def __init__(self, manager: Manager) -> None:
        self._writer = manager.writer.webhooks
        self._seen = self._writer.queued_deliveries
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
    queue = StoreQueue(manager.reader.webhooks, manager.writer.webhooks, manager.write_reserved)
    log.info("webhooks_worker_started", next_due=str(queue.reader.next_due()))
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


def _shown(actor: Actor, delivery: s.Delivery) -> Any:
    """A delivery as `actor` may see it: answers cut short but for site admins."""
    data = dump(delivery)
    for entry in data["log"]:
        entry["response"] = shown_response(entry["response"], actor.is_admin)
    return data


class WebhooksService(Service):
    NAME = "am_webhooks"
    SCHEMA = s.AM_WEBHOOKS

    def _require_scope(self, actor: Actor, repo: str | None) -> None:
        if repo is None:
            self.m.require_admin(actor, "manage site-wide webhooks")
        else:
            self.m.require_repo(actor, repo, "admin")

    def _require_hook(self, actor: Actor, hook: str) -> Webhook:
        """Authorise for the hook's scope; a hook of a repository the actor cannot
        administer is reported as not found, whatever it is."""
        found = self.m.reader.webhooks.get(hook)
        try:
            self._require_scope(actor, found.repo)
        except NotFound:
            raise NotFound(f"no hook {hook}") from None
        return found

    async def add_hook(self, ctx: CallContext, req: s.AddHook) -> Any:
        self._require_scope(self.m.actor(req.actor), req.repo)
        hook, _ = await self.m.write(
            self.m.writer.webhooks.add,
            req.repo,
            req.url,
            req.events,
            secret=req.secret,
            active=req.active,
            ping=req.ping,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        log.info("hook_added", hook=hook.id, repo=hook.repo or "(site)", url=hook.url)
        return dump(hook)

    async def list_hooks(self, ctx: CallContext, req: s.HookScope) -> Any:
        self._require_scope(self.m.actor(req.actor), req.repo)
        return dump(self.m.reader.webhooks.hooks(req.repo))

    async def get_hook(self, ctx: CallContext, req: s.HookRef) -> Any:
        return dump(self._require_hook(self.m.actor(req.actor), req.hook))

    async def update_hook(self, ctx: CallContext, req: s.UpdateHook) -> Any:
        self._require_hook(self.m.actor(req.actor), req.hook)
        hook, _ = await self.m.write(
            self.m.writer.webhooks.update,
            req.hook,
            url=req.url,
            secret=req.secret,
            events=req.events,
            active=req.active,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        return dump(hook)

    async def test_hook(self, ctx: CallContext, req: s.WebhookRef) -> Any:
        self._require_hook(self.m.actor(req.actor), req.hook)
        made, _ = await self.m.write(
            self.m.writer.webhooks.test, req.hook, actor=req.recorded_actor, node=ctx.caller
        )
        return dump(made)

    async def remove_hook(self, ctx: CallContext, req: s.WebhookRef) -> Any:
        self._require_hook(self.m.actor(req.actor), req.hook)
        hook, _ = await self.m.write(
            self.m.writer.webhooks.remove, req.hook, actor=req.recorded_actor, node=ctx.caller
        )
        return dump(hook)

    async def list_deliveries(self, ctx: CallContext, req: s.HookRead) -> Any:
        actor = self.m.actor(req.actor)
        self._require_hook(actor, req.hook)
        page = await self.m.read_page(
            lambda store: partial(store.webhooks.delivery_page, req.hook),
            req.limit,
            scan=True,  # each delivery brings its attempts
            cursor=req.cursor,
        )
        return page.as_json(lambda d: _shown(actor, d))

    async def get_delivery(self, ctx: CallContext, req: s.DeliveryRef) -> Any:
        actor = self.m.actor(req.actor)
        delivery = self.m.reader.webhooks.delivery(req.delivery)
        self._require_hook(actor, delivery.hook)
        return _shown(actor, delivery)

    async def redeliver(self, ctx: CallContext, req: s.Redeliver) -> Any:
        delivery = self.m.reader.webhooks.delivery(req.delivery)
        self._require_hook(self.m.actor(req.actor), delivery.hook)
        made, _ = await self.m.write(
            self.m.writer.webhooks.redeliver,
            req.delivery,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        return dump(made)
