"""`am_webhooks`: hooks, their delivery log, redelivery.

Hook ids are `hook-7`; delivery ids are UUIDs (the X-Applikant-Delivery header).
Event names are the library's (applikant.webhooks): push, repo_created,
repo_deleted, build_finished, ping (dotted forms such as `repo.created` are
accepted).
"""

from __future__ import annotations

from datetime import datetime

from applikant.webhooks.models import Attempt

from .base import Mutation, Op, Read, Result


class Webhook(Result):
    """A hook as listings show it (never with its secret)."""

    id: str
    repo: str | None  # owner/name; None: site-wide
    url: str
    events: list[str]
    active: bool
    created_at: datetime
    created_by: str
    last_status: str | None = None  # of its latest delivery


class NewWebhook(Webhook):
    """The answer to add_hook: the only place the secret is shown."""

    secret: str


class Delivery(Result):
    id: str
    hook: str
    event: str
    status: str  # pending, delivered, failed
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    redelivery_of: str | None
    body: str
    log: list[Attempt]


class AddHook(Mutation):
    repo: str | None = None
    url: str
    events: list[str] = ["push"]
    secret: str | None = None
    active: bool = True
    ping: bool = True


class HookScope(Read):
    repo: str | None = None


class WebhookRef(Mutation):
    hook: str


class HookRead(Read):
    hook: str
    limit: int = 50


class DeliveryRef(Read):
    delivery: str


class Redeliver(Mutation):
    delivery: str


AM_WEBHOOKS: dict[str, Op] = {
    "add_hook": Op(AddHook, NewWebhook),
    "list_hooks": Op(HookScope, list[Webhook]),
    "remove_hook": Op(WebhookRef, Webhook),
    "list_deliveries": Op(HookRead, list[Delivery]),
    "get_delivery": Op(DeliveryRef, Delivery),
    "redeliver": Op(Redeliver, Delivery),
}
"""Every method of am_webhooks: its request model and its answer."""
