"""Run a page's independent reads at once, with plain exceptions.

A page often needs several git reads that do not depend on each other (the
tree, the latest commit, the refs); `gather` runs them in one trio nursery so
the page waits for the slowest, not the sum. The first failure cancels the
others and is raised as itself (not wrapped in an ExceptionGroup), so the
error handlers see a GitReadError or AmError as if it had been awaited alone.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = ["gather"]


async def gather(*thunks: Callable[[], Awaitable[Any]]) -> list[Any]:
    """The results of `thunks`, in order; the first exception raised, unwrapped."""
    results: list[Any] = [None] * len(thunks)
    errors: list[Exception] = []

    async def run(index: int, thunk: Callable[[], Awaitable[Any]], scope: trio.CancelScope) -> None:
        try:
            results[index] = await thunk()
        except Exception as exc:
            errors.append(exc)
            scope.cancel()

    async with trio.open_nursery() as nursery:
        for index, thunk in enumerate(thunks):
            nursery.start_soon(run, index, thunk, nursery.cancel_scope)
    if errors:
        raise errors[0]
    return results
