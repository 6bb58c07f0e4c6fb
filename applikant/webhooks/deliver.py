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
request. Only the first `max_response` bytes of the answer are read and kept;
people who are not site admins see the first `SHOWN_RESPONSE` of those
(`shown_response`).

The client connects only where `settings.policy` allows (dial.py: checked
after DNS, for the address connected to; public addresses unless a site admin
allowed more). A refused address is a final failure (outcome "blocked").
Every other failure without an HTTP answer is recorded in the same words,
"could not deliver": a closed port, a filtered one, an unknown host and a
receiver that hangs look alike, so the delivery log is no port scanner. The
cause is in am's log for the operator.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx
import trio

from ..logs import EventLog
from .dial import AddressRefused, GuardedBackend, Resolver, resolve
from .models import Attempt, Outcome, PendingDelivery, utcnow
from .sign import signature
from .urls import HostPolicy, InvalidHookURL, validate_url

__all__ = [
    "COULD_NOT_DELIVER",
    "SHOWN_RESPONSE",
    "USER_AGENT",
    "DeliverySettings",
    "attempt",
    "encode_body",
    "make_client",
    "new_delivery_id",
    "request_headers",
    "shown_response",
]

log = EventLog("webhooks")

USER_AGENT = "Applikant-Hookshot/1"
COULD_NOT_DELIVER = "could not deliver"
SHOWN_RESPONSE = 256  # characters of an answer shown to all but site admins


PUBLIC_ONLY = HostPolicy()


@dataclass(frozen=True)
class DeliverySettings:
    connect_timeout: float = 5.0
    read_timeout: float = 10.0  # between two reads of the answer
    total: float = 20.0  # the whole attempt
    max_response: int = 4096  # bytes of the answer kept in the log
    policy: HostPolicy = PUBLIC_ONLY  # where deliveries may connect


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


def shown_response(text: str, site_admin: bool) -> str:
    """An answer's body as the delivery log shows it to a viewer."""
    return text if site_admin else text[:SHOWN_RESPONSE]


class _GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool whose connections are made by
    GuardedBackend (httpx takes no network backend of its own)."""

    def __init__(self, backend: GuardedBackend) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_keepalive_connections=0,
            network_backend=backend,
        )


def make_client(
    settings: DeliverySettings = DeliverySettings(), resolver: Resolver = resolve
) -> httpx.AsyncClient:
    """The client for deliveries: connections only where `settings.policy`
    allows (dial.py), no redirects followed, no connection kept between
    deliveries (they are rare, and a stale pooled connection would be one more
    way to fail), no proxy or netrc from the environment."""
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
        transport=_GuardedTransport(GuardedBackend(settings.policy, resolver)),
    )


def _cause(exc: BaseException) -> BaseException:
    """The innermost cause (httpx wraps httpcore's exceptions)."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
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
    except (trio.TooSlowError, httpx.RequestError, httpx.InvalidURL, OSError) as exc:
        # Refused, filtered, reset, unknown host, TLS, hanging, a broken answer...
        cause = _cause(exc)
        if isinstance(cause, AddressRefused):
            return done(Outcome.BLOCKED, error=f"{COULD_NOT_DELIVER}: {cause}")
        log.info(
            "webhook_attempt_failed",
            delivery=delivery.id,
            host=urlsplit(delivery.url).hostname or "",
            cause="the whole attempt timed out"
            if isinstance(exc, trio.TooSlowError)
            else _describe(cause),
        )
        return done(Outcome.CONNECTION_ERROR, error=COULD_NOT_DELIVER)
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
