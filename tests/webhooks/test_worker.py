"""The delivery worker against an in-memory queue and a real receiver, on
trio's mock clock: retries happen on schedule without waiting for them."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import trio

from applikant.webhooks import (
    Attempt,
    DeliverySettings,
    Outcome,
    PendingDelivery,
    RetryPolicy,
    deliver_pending,
    encode_body,
    new_delivery_id,
)

from .receiver import SECRET, free_port, start_receiver
from .test_deliver import LOOPBACK

EPOCH = datetime(2030, 1, 1, tzinfo=UTC)


def clock() -> datetime:
    return EPOCH + timedelta(seconds=trio.current_time())


@dataclass
class Entry:
    delivery: PendingDelivery
    due: datetime | None
    attempts: list[Attempt] = field(default_factory=list)
    state: str = "pending"  # then delivered or failed


class MemoryQueue:
    """What am's store will do, in memory."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.changed = trio.Event()
        self.records: list[tuple[str, Attempt, datetime | None]] = []

    def add(self, url: str, event: str = "push") -> str:
        d = PendingDelivery(
            id=new_delivery_id(),
            hook_id="hook-1",
            url=url,
            secret=SECRET,
            event=event,
            body=encode_body({"n": len(self.entries)}),
        )
        self.entries[d.id] = Entry(d, clock())
        self.changed.set()
        return d.id

    def wake(self) -> trio.Event:
        if self.changed.is_set():
            self.changed = trio.Event()
        return self.changed

    async def due(self, now: datetime, limit: int) -> list[PendingDelivery]:
        await trio.lowlevel.checkpoint()
        ready = sorted(
            (
                e
                for e in self.entries.values()
                if e.state == "pending" and e.due is not None and e.due <= now
            ),
            key=lambda e: e.due or now,
        )
        return [e.delivery.model_copy(update={"attempts": len(e.attempts)}) for e in ready[:limit]]

    async def next_due(self) -> datetime | None:
        await trio.lowlevel.checkpoint()
        dues = [e.due for e in self.entries.values() if e.state == "pending" and e.due]
        return min(dues, default=None)

    async def record(
        self, delivery_id: str, attempt: Attempt, next_attempt_at: datetime | None
    ) -> None:
        await trio.lowlevel.checkpoint()
        entry = self.entries[delivery_id]
        entry.attempts.append(attempt)
        entry.due = next_attempt_at
        if next_attempt_at is None:
            entry.state = "delivered" if attempt.ok else "failed"
        self.records.append((delivery_id, attempt, next_attempt_at))


POLICY = RetryPolicy()  # 5, 15, 45, 135, 405, 600, 600 s; 8 attempts


def gaps(entry: Entry) -> list[float]:
    times = [a.started_at for a in entry.attempts]
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


def within_schedule(observed: list[float], policy: RetryPolicy, slack: float = 0.5) -> bool:
    expected = policy.schedule()[: len(observed)]
    return all(
        e * (1 - policy.jitter) - 1e-6 <= o <= e + slack
        for o, e in zip(observed, expected, strict=False)
    )


async def run_until_idle(queue: MemoryQueue, **kwargs: object) -> None:
    await deliver_pending(
        queue,
        policy=kwargs.pop("policy", POLICY),
        settings=kwargs.pop("settings", LOOPBACK),
        now=clock,  # type: ignore[arg-type]
        wake=queue.wake,
        rng=random.Random(1),
        until_idle=True,
        **kwargs,
    )  # type: ignore[arg-type]


async def test_fails_on_purpose_then_comes_back(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    receiver = await start_receiver(nursery)
    queue = MemoryQueue()
    did = queue.add(receiver.url("/flaky/3"))
    await run_until_idle(queue)
    entry = queue.entries[did]
    assert entry.state == "delivered"
    assert [a.outcome for a in entry.attempts] == [Outcome.HTTP_ERROR] * 3 + [Outcome.DELIVERED]
    assert [a.status_code for a in entry.attempts] == [500, 500, 500, 200]
    assert [a.number for a in entry.attempts] == [1, 2, 3, 4]
    assert within_schedule(gaps(entry), POLICY)
    assert all(s.signed for s in receiver.seen)
    # Every attempt is the same delivery: same id, same signed body.
    assert len({s.headers["x-applikant-delivery"] for s in receiver.seen}) == 1
    assert len({s.body for s in receiver.seen}) == 1


async def test_receiver_down_then_started(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    port = free_port()
    queue = MemoryQueue()
    did = queue.add(f"http://127.0.0.1:{port}/ok")

    async def start_after_two_failures() -> None:
        while len(queue.entries[did].attempts) < 2:  # noqa: ASYNC110 - polls the fake queue
            await trio.sleep(0.5)
        await start_receiver(nursery, port)

    nursery.start_soon(start_after_two_failures)
    await run_until_idle(queue)
    entry = queue.entries[did]
    assert [a.outcome for a in entry.attempts] == [Outcome.CONNECTION_ERROR] * 2 + [
        Outcome.DELIVERED
    ]
    assert within_schedule(gaps(entry), POLICY)


async def test_hanging_url_retried_then_given_up(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    receiver = await start_receiver(nursery)
    queue = MemoryQueue()
    did = queue.add(receiver.url("/hang"))
    start = trio.current_time()
    await run_until_idle(
        queue, settings=DeliverySettings(read_timeout=10, total=20, policy=LOOPBACK.policy)
    )
    entry = queue.entries[did]
    assert entry.state == "failed" and entry.due is None
    assert [a.outcome for a in entry.attempts] == [Outcome.CONNECTION_ERROR] * POLICY.max_attempts
    # Each gap is the attempt's own 10 s timeout plus the backoff delay.
    assert within_schedule([g - 10 for g in gaps(entry)], POLICY, slack=1)
    assert trio.current_time() - start < sum(POLICY.schedule()) + 10 * 8 + 10
    assert receiver.hits["/hang"] == 8


async def test_endless_redirect_recorded_and_retried(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    receiver = await start_receiver(nursery)
    queue = MemoryQueue()
    did = queue.add(receiver.url("/redirect"))
    policy = RetryPolicy(max_attempts=3)
    await run_until_idle(queue, policy=policy)
    entry = queue.entries[did]
    assert entry.state == "failed"
    assert [(a.outcome, a.status_code, a.location) for a in entry.attempts] == [
        (Outcome.REDIRECT, 302, receiver.url("/redirect"))
    ] * 3
    assert receiver.hits["/redirect"] == 3  # one request per attempt, never followed


async def test_refusals_are_final(nursery: trio.Nursery, autojump_clock: trio.abc.Clock) -> None:
    receiver = await start_receiver(nursery)
    queue = MemoryQueue()
    gone = queue.add(receiver.url("/status/410"))
    limited = queue.add(receiver.url("/status/429"))
    bad_url = queue.add("ftp://example.org/hook")
    await run_until_idle(queue, policy=RetryPolicy(max_attempts=3))
    assert [a.status_code for a in queue.entries[gone].attempts] == [410]
    assert [a.status_code for a in queue.entries[limited].attempts] == [429] * 3
    assert [a.outcome for a in queue.entries[bad_url].attempts] == [Outcome.INVALID_URL]
    assert {e.state for e in queue.entries.values()} == {"failed"}


async def test_wake_delivers_a_new_delivery_at_once(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    receiver = await start_receiver(nursery)
    queue = MemoryQueue()
    nursery.start_soon(
        lambda: deliver_pending(queue, now=clock, wake=queue.wake, poll_interval=300)
    )
    await trio.sleep(100)  # the worker sleeps: nothing is pending
    added_at = trio.current_time()
    did = queue.add(receiver.url("/ok"))
    while queue.entries[did].state == "pending":  # noqa: ASYNC110 - polls the fake queue
        await trio.sleep(0.01)
    assert trio.current_time() - added_at < 1


async def test_many_deliveries_concurrently(
    nursery: trio.Nursery, autojump_clock: trio.abc.Clock
) -> None:
    receiver = await start_receiver(nursery)
    queue = MemoryQueue()
    ids = [queue.add(receiver.url(f"/flaky/{i % 3}/{i}")) for i in range(20)]
    await run_until_idle(queue, concurrency=5)
    assert all(queue.entries[i].state == "delivered" for i in ids)
    assert len(receiver.seen) == sum(1 + i % 3 for i in range(20))
