"""The call-deadline heap on trio's mock clock: each item expires at its deadline,
not a poll later; settled items never expire; the heap stays as small as the
number of items in flight; with nothing to wait for, its task sleeps for good."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from applikant.node.deadlines import MIN_REBUILD, Deadlines


class Item:
    def __init__(self, name: str, log: list[tuple[str, float]]) -> None:
        self.name = name
        self.log = log
        self.settled = False

    def expire(self) -> None:
        self.settled = True
        self.log.append((self.name, trio.current_time()))


@asynccontextmanager
async def running() -> AsyncIterator[Deadlines]:
    deadlines = Deadlines()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(deadlines.run)
        await trio.testing.wait_all_tasks_blocked()
        yield deadlines
        nursery.cancel_scope.cancel()


async def test_items_expire_at_their_deadlines_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []
    async with running() as deadlines:
        t0 = trio.current_time()
        deadlines.add(t0 + 5, Item("five", log))
        deadlines.add(t0 + 2, Item("two", log))  # earlier than the one slept on
        deadlines.add(t0 + 9, Item("nine", log))
        deadlines.add(math.inf, Item("never", log))  # not kept at all
        assert len(deadlines) == 3
        await trio.sleep(20)
    assert [name for name, _ in log] == ["two", "five", "nine"]
    assert [when - t0 for _, when in log] == [pytest.approx(2), pytest.approx(5), pytest.approx(9)]


async def test_settled_items_never_expire(autojump_clock: trio.testing.MockClock) -> None:
    log: list[tuple[str, float]] = []
    async with running() as deadlines:
        t0 = trio.current_time()
        answered = Item("answered", log)
        deadlines.add(t0 + 1, answered)
        deadlines.add(t0 + 3, Item("late", log))
        answered.settled = True
        await trio.sleep(10)
        assert len(deadlines) == 0
    assert [name for name, _ in log] == ["late"]


async def test_the_heap_stays_as_small_as_what_is_in_flight() -> None:
    """A busy node answers nearly every call: those entries must not pile up."""
    log: list[tuple[str, float]] = []
    deadlines = Deadlines()  # not running: only the rebuild keeps it small
    live = [Item(f"live{i}", log) for i in range(10)]
    for i, item in enumerate(live):
        deadlines.add(1000.0 + i, item)
    for i in range(10_000):
        answered = Item(f"call{i}", log)
        deadlines.add(100.0 + i, answered)
        answered.settled = True
        assert len(deadlines) <= max(MIN_REBUILD, 2 * len(live)) + 1
    assert log == []


async def test_at_rest_the_task_sleeps_for_good(autojump_clock: trio.testing.MockClock) -> None:
    """No deadline: no wake-up, however long the clock runs (the 20 ms sweeper
    this replaces woke 50 times a second)."""
    steps = StepCounter()
    async with running() as deadlines:
        trio.lowlevel.add_instrument(steps)
        try:
            await trio.sleep(3600)
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert len(deadlines) == 0
    assert steps.count >= 1  # (the test task itself woke)
    assert not [name for name in steps.tasks if "Deadlines.run" in name]


class StepCounter(trio.abc.Instrument):
    """How often each task ran (by name) while installed."""

    def __init__(self) -> None:
        self.steps: dict[str, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name] = self.steps.get(task.name, 0) + 1

    @property
    def tasks(self) -> set[str]:
        return set(self.steps)

    @property
    def count(self) -> int:
        return sum(self.steps.values())

    def by_name(self, suffix: str) -> int:
        return sum(n for name, n in self.steps.items() if name.endswith(suffix))
