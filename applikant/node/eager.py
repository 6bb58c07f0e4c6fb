"""Running a coroutine in the task at hand until it first waits: eager tasks for trio.

Most calls a node serves finish without waiting for anything (an echo, a lookup
in memory, a refusal). Giving each its own task costs a task, a cancel scope and
one more pass of trio's scheduler: about a fifth of what serving a call costs.
So the link's reader starts the handler's coroutine itself (its first
`send(None)`, in serving.on_call); if it finishes there, its answer goes out
at once. If it waits (it yields a trap to
trio: a lock, a thread, another call), the reader task carries on with it to the
end (`resume`, a trampoline that passes each trap to trio and each answer or
exception back), and a new task takes over reading the link. Nothing runs outside
the link's nursery: structured concurrency holds, only which task reads moves.

Cancelling such a call (its caller's Cancel) cancels the scope its host task
entered when it began to read (Link._read): entered before the handler's own
scopes, it nests around them.
"""

from __future__ import annotations

import types
from collections.abc import Coroutine, Generator
from typing import Any


@types.coroutine
def resume(coro: Coroutine[Any, Any, Any], trap: Any) -> Generator[Any, Any, Any]:
    """Go on running `coro` (which yielded `trap` in this task) in this task; its result."""
    while True:
        try:
            answer = yield trap
        except BaseException as exc:  # (cancellation among them: it must reach coro)
            try:
                trap = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                trap = coro.send(answer)
            except StopIteration as done:
                return done.value
