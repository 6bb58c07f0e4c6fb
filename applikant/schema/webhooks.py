"""`am_webhooks`: hooks, their delivery log, redelivery.

Hook ids are `hook-7`; delivery ids are UUIDs (the X-Applikant-Delivery header).
Event names are the library's (applikant.webhooks): push, repo_created,
repo_deleted, build_finished, ping (dotted forms such as `repo.created` are
accepted).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from applikant.webhooks.models import Attempt

from .base import Body, Mutation, Op, Page, Paged, Read, Result


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


# ---- bodies: what people send, through aw's API or the admin CLI ----------------


class NewHook(Body):
    """A new hook (`POST /api/repos/{owner}/{name}/hooks`, `POST /api/admin/hooks`):
    the secret defaults to a random one, shown once in the answer."""

    url: str = Field(max_length=2048)
    events: list[str] = Field(default=["push"], min_length=1, max_length=10)
    secret: str | None = Field(default=None, max_length=256, repr=False)
    active: bool = True


class HookPatch(Body):
    """Changes to a hook (`PATCH .../hooks/{hook}`); None leaves a field as it is."""

    url: str | None = Field(default=None, max_length=2048)
    events: list[str] | None = Field(default=None, min_length=1, max_length=10)
    secret: str | None = Field(default=None, max_length=256, repr=False)
    active: bool | None = None


# ---- requests of am_webhooks ------------------------------------------------------


class AddHook(NewHook, Mutation):
    repo: str | None = None
    ping: bool = True


class UpdateHook(HookPatch, Mutation):
    hook: str


class HookScope(Read):
    repo: str | None = None


class HookRef(Read):
    hook: str


class WebhookRef(Mutation):
    hook: str


class HookRead(Read, Paged):
    """A hook's deliveries, newest first; `limit` defaults to 50."""

    hook: str
    limit: int = Field(default=50, ge=1, le=500)


class DeliveryRef(Read):
    delivery: str


class Redeliver(Mutation):
    delivery: str


AM_WEBHOOKS: dict[str, Op] = {
    "add_hook": Op(AddHook, NewWebhook),
    "list_hooks": Op(HookScope, list[Webhook]),
    "get_hook": Op(HookRef, Webhook),
    "update_hook": Op(UpdateHook, Webhook),
    "test_hook": Op(WebhookRef, Delivery),
    "remove_hook": Op(WebhookRef, Webhook),
    "list_deliveries": Op(HookRead, Page[Delivery]),
    "get_delivery": Op(DeliveryRef, Delivery),
    "redeliver": Op(Redeliver, Delivery),
}
"""Every method of am_webhooks: its request model and its answer."""
