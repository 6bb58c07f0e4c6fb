"""Webhook delivery: signed JSON POSTs, retried with backoff, every attempt logged.

Public API:
- `validate_url(url)`: refuse what cannot be a hook's URL; `HostPolicy`: the
  addresses deliveries may connect to (urls.py; enforced per connection by dial.py).
- `signature(secret, body)`, `verify(secret, body, header)` (sign.py).
- `attempt(client, delivery) -> Attempt`: one POST (deliver.py).
- `RetryPolicy`, `next_attempt_at(attempt, now)` (retry.py).
- `deliver_pending(queue, ...)`: the worker over a `DeliveryQueue` (worker.py).
- `Hook`, `PendingDelivery`, `Attempt`, `Outcome` (models.py).
"""

from .deliver import (
    COULD_NOT_DELIVER,
    SHOWN_RESPONSE,
    USER_AGENT,
    DeliverySettings,
    attempt,
    encode_body,
    make_client,
    new_delivery_id,
    request_headers,
    shown_response,
)
from .models import EVENTS, Attempt, Hook, Outcome, PendingDelivery, new_secret
from .retry import DEFAULT_POLICY, RetryPolicy, is_final_failure, next_attempt_at
from .sign import signature, verify
from .urls import HostPolicy, InvalidHookURL, blocked_reason, validate_url
from .worker import DeliveryQueue, deliver_pending

__all__ = [
    "COULD_NOT_DELIVER",
    "DEFAULT_POLICY",
    "EVENTS",
    "SHOWN_RESPONSE",
    "USER_AGENT",
    "Attempt",
    "DeliveryQueue",
    "DeliverySettings",
    "Hook",
    "HostPolicy",
    "InvalidHookURL",
    "Outcome",
    "PendingDelivery",
    "RetryPolicy",
    "attempt",
    "blocked_reason",
    "deliver_pending",
    "encode_body",
    "is_final_failure",
    "make_client",
    "new_delivery_id",
    "new_secret",
    "next_attempt_at",
    "request_headers",
    "shown_response",
    "signature",
    "validate_url",
    "verify",
]
