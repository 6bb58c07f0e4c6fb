"""The delivery worker: takes due deliveries from a queue, attempts them,
records each attempt and when to try again.

The queue is am's store (deliveries are durable: a push is acknowledged
without waiting for webhooks, and nothing queued is lost on a restart); the
worker needs only the small `DeliveryQueue` interface below. Delivery is at
least once: an attempt cut short by a crash, before it was recorded, is made
again; receivers tell repeats apart by X-Applikant-Delivery.

One worker per queue (am runs one): it does not lease deliveries, so two
workers on one queue could attempt a delivery at the same time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

import httpx
import trio

from .deliver import DEFAULT_SETTINGS, DeliverySettings, attempt, make_client
from .models import Attempt, PendingDelivery, utcnow
from .retry import DEFAULT_POLICY, RetryPolicy, next_attempt_at

__all__ = ["DeliveryQueue", "deliver_pending"]


class DeliveryQueue(Protocol):
    async def due(self, now: datetime, limit: int) -> list[PendingDelivery]:
        """Up to `limit` deliveries whose next attempt is due at `now`,
        earliest first."""

    async def next_due(self) -> datetime | None:
        """When the earliest pending delivery falls due; None when none is
        pending."""

    async def record(
        self, delivery_id: str, attempt: Attempt, next_attempt_at: datetime | None
    ) -> None:
        """Keep `attempt` in the delivery's log. `next_attempt_at` None: the
        delivery is finished, delivered if `attempt.ok`, else failed for good."""


async def deliver_pending(
    queue: DeliveryQueue,
    *,
    client: httpx.AsyncClient | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
    settings: DeliverySettings = DEFAULT_SETTINGS,
    concurrency: int = 4,
    poll_interval: float = 5.0,
    wake: Callable[[], trio.Event] | None = None,
    now: Callable[[], datetime] = utcnow,
    rng: random.Random | None = None,
    until_idle: bool = False,
) -> None:
    """Deliver what is due, for ever (or, with `until_idle`, until nothing is
    pending any more).

    Between rounds it sleeps until the next delivery falls due, at most
    `poll_interval` seconds, or until the event that `wake()` returns is set
    (the store sets it when it queues a delivery: `wake` is called anew each
    round). `now` is the clock due times are compared with (tests pass one
    driven by trio's mock clock). At most `concurrency` attempts run at once.
    Errors of the queue propagate; nothing the receivers do does.
    """
    own_client = client is None
    http = client or make_client(settings)
    limiter = trio.CapacityLimiter(concurrency)

    async def one(delivery: PendingDelivery) -> None:
        async with limiter:
            result = await attempt(http, delivery, settings=settings, now=now())
            await queue.record(delivery.id, result, next_attempt_at(result, now(), policy, rng))

    try:
        while True:
            batch = await queue.due(now(), concurrency * 4)
            if batch:
                async with trio.open_nursery() as nursery:
                    for delivery in batch:
                        nursery.start_soon(one, delivery)
                continue
            upcoming = await queue.next_due()
            if upcoming is None and until_idle:
                return
            delay = poll_interval
            if upcoming is not None:
                delay = min(delay, max(0.0, (upcoming - now()).total_seconds()))
            with trio.move_on_after(delay):
                if wake is not None:
                    await wake().wait()
                else:
                    await trio.sleep_forever()
    finally:
        if own_client:
            with trio.CancelScope(shield=True):
                await http.aclose()
