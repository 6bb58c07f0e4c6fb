"""One attempt at one delivery: an HTTP POST, and what came of it.

The request:

    POST <url>
    Content-Type: application/json
    User-Agent: Applikant-Hookshot/1
    X-Applikant-Event: push
    X-Applikant-Event-Type: push
    X-Applikant-Delivery: <uuid, the same for every attempt of a delivery>
    X-Applikant-Signature-256: sha256=<hex HMAC-SHA256 of the body with the secret>
    X-GitHub-Event: push            (repository for repo_created and repo_deleted)
    X-GitHub-Delivery: <the same uuid>
    X-Hub-Signature-256: <the same signature>

so that receivers written for GitHub (or Gitea's GitHub-compatible mode) read
it as they read GitHub's; the bodies have Gitea's and GitHub's fields.

    <the delivery's JSON body>

Guarantees of `attempt()`: it never raises for what the receiver or the network
does (refused, reset, hanging, garbage, huge answers); it returns an `Attempt`
within `total` seconds (plus the time to close the connection). Redirects are
not followed: a 3xx is recorded as a failed attempt (outcome "redirect") with
its Location, so a hook cannot be bounced to another address (the URL the
admin entered is the only one posted to) and a loop of redirects costs one
request. Only the first `max_response` bytes of the answer are read and kept.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import trio

from .models import Attempt, Outcome, PendingDelivery, utcnow
from .sign import signature
from .urls import InvalidHookURL, validate_url

__all__ = [
    "USER_AGENT",
    "DeliverySettings",
    "attempt",
    "encode_body",
    "make_client",
    "new_delivery_id",
    "request_headers",
]

USER_AGENT = "Applikant-Hookshot/1"


@dataclass(frozen=True)
class DeliverySettings:
    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # between two reads of the answer
    total: float = 20.0  # the whole attempt
    max_response: int = 4096  # bytes of the answer kept in the log


DEFAULT_SETTINGS = DeliverySettings()


def new_delivery_id() -> str:
    return str(uuid.uuid4())


def encode_body(payload: Any) -> str:
    """The JSON text of a delivery (compact, UTF-8 kept as is)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


#: GitHub's names for the events whose name is not the same.
GITHUB_EVENTS = {"repo_created": "repository", "repo_deleted": "repository"}


def request_headers(*, event: str, delivery_id: str, secret: str, body: bytes) -> dict[str, str]:
    signed = signature(secret, body)
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Applikant-Event": event,
        "X-Applikant-Event-Type": event,
        "X-Applikant-Delivery": delivery_id,
        "X-Applikant-Signature-256": signed,
        "X-GitHub-Event": GITHUB_EVENTS.get(event, event),
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": signed,
    }


def make_client(settings: DeliverySettings = DeliverySettings()) -> httpx.AsyncClient:
    """The client for deliveries: no redirects followed, no connection kept
    between deliveries (they are rare, and a stale pooled connection would be
    one more way to fail), no proxy or netrc from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."


async def attempt(
    client: httpx.AsyncClient,
    delivery: PendingDelivery,
    *,
    settings: DeliverySettings = DeliverySettings(),
    now: datetime | None = None,
) -> Attempt:
    """Post `delivery` once; the Attempt (number = delivery.attempts + 1)."""
    started_at = now or utcnow()
    t0 = time.monotonic()
    number = delivery.attempts + 1

    def done(outcome: Outcome, **kw: Any) -> Attempt:
        return Attempt(
            number=number,
            started_at=started_at,
            duration=round(time.monotonic() - t0, 6),
            outcome=outcome,
            **kw,
        )

    try:
        validate_url(delivery.url)
    except InvalidHookURL as exc:
        return done(Outcome.INVALID_URL, error=str(exc))
    body = delivery.body.encode()
    headers = request_headers(
        event=delivery.event, delivery_id=delivery.id, secret=delivery.secret, body=body
    )
    try:
        with trio.fail_after(settings.total):
            async with client.stream(
                "POST", delivery.url, content=body, headers=headers
            ) as response:
                snippet = bytearray()
                # Enough is read: stop by cancelling rather than by `break`, so
                # that Cancelled runs through httpx's generators and ends them
                # (a generator left half-way is reported when it is collected).
                with trio.CancelScope() as enough:
                    async for chunk in response.aiter_bytes():
                        snippet += chunk
                        if len(snippet) >= settings.max_response:
                            enough.cancel()
    except (trio.TooSlowError, httpx.TimeoutException) as exc:
        what = "the whole attempt" if isinstance(exc, trio.TooSlowError) else type(exc).__name__
        return done(Outcome.TIMEOUT, error=f"timed out ({what})")
    except (httpx.RequestError, httpx.InvalidURL, OSError) as exc:
        # Refused, reset, unknown host, TLS, a broken answer...
        return done(Outcome.CONNECTION_ERROR, error=_describe(exc))
    text = bytes(snippet[: settings.max_response]).decode("utf-8", "replace")
    code = response.status_code
    if 200 <= code < 300:
        return done(Outcome.DELIVERED, status_code=code, response=text)
    if 300 <= code < 400:
        return done(
            Outcome.REDIRECT,
            status_code=code,
            response=text,
            location=response.headers.get("location", "")[:2048],
            error="redirects are not followed",
        )
    return done(Outcome.HTTP_ERROR, status_code=code, response=text)
