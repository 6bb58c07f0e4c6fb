"""The retry schedule, without sleeping."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from applikant.webhooks import (
    DEFAULT_POLICY,
    Attempt,
    Outcome,
    RetryPolicy,
    is_final_failure,
    next_attempt_at,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def failed(number: int, outcome: Outcome = Outcome.HTTP_ERROR, code: int | None = 500) -> Attempt:
    return Attempt(number=number, started_at=NOW, duration=0.1, outcome=outcome, status_code=code)


def test_default_schedule() -> None:
    assert DEFAULT_POLICY.schedule() == [5, 15, 45, 135, 405, 600, 600]
    assert DEFAULT_POLICY.max_attempts == 8


def test_doubling_capped_at_ten_minutes() -> None:
    policy = RetryPolicy(base=1, factor=2, cap=600, max_attempts=12, jitter=0)
    assert policy.schedule() == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600]
    assert policy.delay(1000) == 600  # no overflow however many


def test_jitter_only_shortens_and_is_reproducible() -> None:
    policy = RetryPolicy(jitter=0.25)
    rng = random.Random(7)
    for n in range(1, 20):
        full = min(policy.cap, policy.base * policy.factor ** (n - 1))
        d = policy.delay(n, rng)
        assert full * 0.75 <= d <= full
    assert policy.delay(3, random.Random(1)) == policy.delay(3, random.Random(1))
    spread = {round(policy.delay(2, rng), 6) for _ in range(50)}
    assert len(spread) > 40  # deliveries failing together do not return together


def test_next_attempt_at_per_schedule_then_gives_up() -> None:
    policy = RetryPolicy(jitter=0)
    times = [next_attempt_at(failed(n), NOW, policy) for n in range(1, 9)]
    assert times[:-1] == [NOW + timedelta(seconds=s) for s in policy.schedule()]
    assert times[-1] is None  # the 8th attempt was the last


def test_what_is_not_retried() -> None:
    ok = Attempt(number=1, started_at=NOW, duration=0, outcome=Outcome.DELIVERED, status_code=200)
    assert next_attempt_at(ok, NOW) is None
    for code in (400, 401, 403, 404, 410, 422):
        assert is_final_failure(failed(1, code=code))
        assert next_attempt_at(failed(1, code=code), NOW) is None
    for code in (408, 429, 500, 502, 503):
        assert not is_final_failure(failed(1, code=code))
    assert is_final_failure(failed(1, Outcome.INVALID_URL, None))
    assert is_final_failure(failed(1, Outcome.BLOCKED, None))  # a site admin may allow it
    for outcome in (Outcome.TIMEOUT, Outcome.CONNECTION_ERROR):
        assert next_attempt_at(failed(1, outcome, None), NOW) is not None
    assert next_attempt_at(failed(1, Outcome.REDIRECT, 302), NOW) is not None


def test_bad_policies() -> None:
    for kwargs in (
        {"base": 0},
        {"factor": 0.5},
        {"cap": 0.5},
        {"max_attempts": 0},
        {"jitter": 1.0},
    ):
        with pytest.raises(ValueError):
            RetryPolicy(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DEFAULT_POLICY.delay(0)
