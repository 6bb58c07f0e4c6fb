"""The one way tests and benchmarks wait for another process: poll a condition until
it holds, with a deadline generous enough for a loaded machine.

A condition another process makes true (a key reaching sshd's file, a build
starting, a log line) gives us nothing to wait on but the condition itself, so
we poll it. The deadline only says when to give up and name what never came; it
is never a measure of speed (that is `bench/`'s job), so it is long: a shared,
loaded machine may be slow, and a condition that holds returns at once anyway.
Keep it below the per-test timeout (pyproject's `timeout`), so a wait that gives
up fails with its own message rather than the test being killed.

Inside trio, wait on events where the code offers them (`trio.Event`, a memory
channel); `wait_until_async` is for conditions in another process.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

T = TypeVar("T")

TIMEOUT = 30.0
"""Seconds before a wait gives up, unless told otherwise."""

EVERY = 0.02
"""Seconds between two looks at the condition."""


def _gave_up(what: str, timeout: float, last: object) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g} s waiting for {what} (last: {last!r})")


def wait_until(
    cond: Callable[[], T],
    timeout: float = TIMEOUT,
    what: str = "condition",
    *,
    every: float = EVERY,
) -> T:
    """Call `cond` until it returns something truthy, and return that.

    Raises AssertionError naming `what` (and the last value) after `timeout`
    seconds. `cond` may itself raise to give up at once (say, when the process it
    watches has died); its exception passes through.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _gave_up(what, timeout, value)
        time.sleep(every)


async def wait_until_async(
    cond: Callable[[], T | Awaitable[T]],
    timeout: float = TIMEOUT,
    what: str = "condition",
    *,
    every: float = EVERY,
) -> T:
    """`wait_until` inside trio: `cond` may be a plain or an async function.

    The deadline is on trio's clock, so the wait also works on a `MockClock`.
    """
    import trio

    deadline = trio.current_time() + timeout
    while True:
        got = cond()
        value = cast(T, await got if inspect.isawaitable(got) else got)
        if value:
            return value
        if trio.current_time() > deadline:
            raise _gave_up(what, timeout, value)
        await trio.sleep(every)
