"""When to try a delivery again: exponential backoff with jitter, pure
functions (no clock, no sleeping; randomness passed in) so tests need not wait.

The default schedule: after the 1st failed attempt wait about 5 s, then 15,
45, 135, 405, then 600 (the cap, 10 minutes) twice, and give up after the 8th
attempt: about half an hour in all, so a receiver restarted or redeployed
meanwhile still gets its deliveries. Jitter
takes up to `jitter` (10 %) off each delay so that many deliveries failing
together do not come back together; a delay never exceeds the cap.

Not every failure is worth retrying: a 4xx answer other than 408 (request
timeout) and 429 (too many requests) means the receiver refuses the delivery
itself, so it is final (a user can redeliver it by hand); so is an address
webhooks may not reach (a site admin may allow it, then redeliver). Timeouts, refused
connections, 5xx, 3xx (not followed, perhaps temporary) are retried.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from .models import Attempt, Outcome

__all__ = ["DEFAULT_POLICY", "RetryPolicy", "is_final_failure", "next_attempt_at"]


@dataclass(frozen=True)
class RetryPolicy:
    base: float = 5.0  # seconds before the 2nd attempt
    factor: float = 3.0
    cap: float = 600.0  # no delay is longer
    max_attempts: int = 8
    jitter: float = 0.1  # up to this fraction taken off each delay

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError("need base > 0, factor >= 1, cap >= base")
        if self.max_attempts < 1 or not 0 <= self.jitter < 1:
            raise ValueError("need max_attempts >= 1 and 0 <= jitter < 1")

    def delay(self, attempts_made: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after `attempts_made` failed attempts (>= 1)."""
        if attempts_made < 1:
            raise ValueError("attempts_made starts at 1")
        # min() before the power would overflow for large attempt counts.
        exponent = min(attempts_made - 1, 64)
        raw = min(self.cap, self.base * self.factor**exponent)
        if self.jitter:
            raw *= 1 - self.jitter * (rng or random).random()
        return raw

    def schedule(self) -> list[float]:
        """The delays without jitter, one between each two attempts."""
        return [
            min(self.cap, self.base * self.factor ** min(n - 1, 64))
            for n in range(1, self.max_attempts)
        ]


DEFAULT_POLICY = RetryPolicy()


def is_final_failure(attempt: Attempt) -> bool:
    """A failure that retrying will not mend: the receiver said no, or the URL
    is no longer acceptable."""
    if attempt.outcome in (Outcome.INVALID_URL, Outcome.BLOCKED):
        return True
    code = attempt.status_code
    return (
        attempt.outcome is Outcome.HTTP_ERROR
        and code is not None
        and 400 <= code < 500
        and code not in (408, 429)
    )


def next_attempt_at(
    attempt: Attempt,
    now: datetime,
    policy: RetryPolicy = DEFAULT_POLICY,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again after `attempt`, or None: it succeeded, the failure
    is final, or it was the last attempt the policy allows."""
    if attempt.ok or is_final_failure(attempt) or attempt.number >= policy.max_attempts:
        return None
    return now + timedelta(seconds=policy.delay(attempt.number, rng))
