"""Webhooks as am's store keeps them: hooks, deliveries, and attempts.

Same conventions as the results of `applikant.schema`: frozen pydantic models of
JSON-friendly types, unknown fields refused, datetimes UTC.

A delivery is made once, when the event happens (its JSON body fixed then, so
every attempt and a redelivery send and sign the same bytes), and then tried
until an attempt succeeds, the retry policy gives up, or the receiver says no
for good (see retry.py). Every attempt is recorded.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .urls import InvalidHookURL, validate_url

__all__ = ["EVENTS", "Attempt", "Hook", "Outcome", "PendingDelivery", "new_secret", "utcnow"]

#: The events a hook may subscribe to; "ping" is sent when a hook is made.
EVENTS = ("push", "repo_created", "repo_deleted", "build_finished", "ping")
Event = Literal["push", "repo_created", "repo_deleted", "build_finished", "ping"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_secret() -> str:
    """A fresh random secret for a hook (256 bits, hex)."""
    return secrets.token_hex(32)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _push_only() -> list[Event]:
    return ["push"]


class Hook(_Model):
    """A webhook: where to send which events, and the secret that signs them.
    `repo_id` None: a site-wide hook (every repository)."""

    id: str
    repo_id: str | None = None
    url: str
    secret: str = Field(min_length=1, max_length=256)
    events: list[Event] = Field(default_factory=_push_only, min_length=1)
    active: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            return validate_url(value)
        except InvalidHookURL as exc:
            raise ValueError(str(exc)) from None


class Outcome(StrEnum):
    DELIVERED = "delivered"  # a 2xx answer
    HTTP_ERROR = "http-error"  # any other status but 3xx
    REDIRECT = "redirect"  # 3xx: not followed; its Location is recorded
    TIMEOUT = "timeout"  # (older records: now a connection-error)
    CONNECTION_ERROR = "connection-error"  # no answer: refused, filtered, timed out, TLS...
    INVALID_URL = "invalid-url"  # a stored URL that no longer passes validate_url
    BLOCKED = "blocked"  # the host's addresses are not ones webhooks may reach


class Attempt(_Model):
    """One try at a delivery, as the delivery log shows it."""

    number: int = Field(ge=1)  # 1 for the first try
    started_at: datetime
    duration: float  # seconds
    outcome: Outcome
    status_code: int | None = None
    location: str | None = None  # of a redirect
    response: str = ""  # the first bytes of the answer's body, decoded
    error: str = ""  # in words, for the failures without a status

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.DELIVERED


class PendingDelivery(_Model):
    """A delivery that is due, as the worker gets it from the store."""

    id: str  # a uuid: the X-Applikant-Delivery header
    hook_id: str
    url: str
    secret: str
    event: str
    body: str  # the JSON text, fixed when the delivery was made
    attempts: int = Field(default=0, ge=0)  # tries made so far
