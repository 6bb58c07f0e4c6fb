"""Delivery of recorded pushes to am: retried until am has them, never dropped in silence.

What there is to deliver lives in af's spool (:mod:`applikant.frontend.spool`):
queued post-receive events, and intents written ahead of pushes whose
post-receive never reached am. :meth:`Delivery.run` goes over them when there
is something to do, and sleeps otherwise (at rest it does not wake at all but
for a sweep every ``SWEEP`` seconds, for files ``as``/``ah`` spooled while af
was out of reach): when woken (a new event queued, am back: :meth:`wake`,
:meth:`on_connect`), when a held-back event's retry is due, and when an intent
whose push still runs is due for another look (:meth:`watch`; 0.5, 1, 2...
``WATCH_CAP`` s while the push runs; a push whose post-receive reached am
forgets it, :meth:`forget`):

* a queued event is sent to ``am_hook_api.handle_hook``;
* an intent whose push is over (its receive-pack is gone, :mod:`pushid`) is
  settled against the refs on disk (:mod:`refstate`): sent with the updates
  that happened, or discarded when none did (the push was refused or died
  before its refs moved). An intent whose push still runs is left alone.

Every failure is retried: am unreachable or too slow ends the pass and the next
one waits (1, 2, 4... ``BACKOFF_CAP`` s, reset when am comes back); an error
reply (a failed commit, ``database or disk is full``) holds back that event
alone, with the same backoff. An event am rejects for good (``PERMANENT``:
it fails validation, its repository is gone) is a dead letter: moved to
``failed/`` with the reason, logged, and counted in af's status, which
``applikant doctor``, ``/metrics`` and the admin dashboard show.

Exactly once: every copy of a push carries the same event id, and am records
an event id once; a file is removed only after am answered.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from applikant import gitops
from applikant.amclient import AmClient, AmRefused, AmUnavailable
from applikant.frontend import pushid, refstate, spool
from applikant.logs import EventLog

__all__ = ["AM_TIMEOUT", "PERMANENT", "Delivery", "Outcome"]

log = EventLog("af")

AM_TIMEOUT = 5.0
#: am's error kinds that no retry can change: the event is a dead letter.
PERMANENT = frozenset({"bad_request", "not_found", "forbidden", "conflict"})
BACKOFF_CAP = 60.0
#: An intent without a receive-pack to watch is settled after this long.
ORPHAN_AGE = 600.0
#: Seconds between two looks at an intent whose push still runs: from
#: WATCH_FIRST, doubling to WATCH_CAP.
WATCH_FIRST = 0.5
WATCH_CAP = 10.0
#: Seconds between two passes when nothing is due (files spooled by as/ah).
SWEEP = 60.0

Build = Callable[[dict[str, Any]], dict[str, Any]]
Prepare = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Outcome:
    """What one attempt came to: ``recorded`` (with am's ``reply``),
    ``refused`` for good, or ``later`` (``unavailable`` when am could not be asked)."""

    def __init__(self, state: str, reason: str = "", reply: Any = None, unavailable: bool = False):
        self.state, self.reason, self.reply, self.unavailable = state, reason, reply, unavailable


class Delivery:
    """See the module docstring. ``build(request)`` turns a hook request into
    am's hook data (``HookServer.build``), ``prepare(request)`` does the same
    for a post-receive with its builds marked (``HookServer.post_receive_data``);
    both raise ``ValueError`` when the request cannot be used."""

    def __init__(self, link: AmClient, spool_dir: str, build: Build, prepare: Prepare) -> None:
        self.link = link
        self.spool_dir = spool_dir
        self.build = build
        self.prepare = prepare
        self.delivered = 0  # events recorded by am from the spool or from intents
        self.discarded = 0  # intents of pushes whose refs never moved
        self.parked = 0  # dead letters made by this process
        self.last_error = ""
        self._wake = trio.Event()
        self._held: dict[str, tuple[int, float]] = {}  # path -> (failures, next attempt)
        self._watched: dict[str, tuple[int, float]] = {}  # intent path -> (looks, next look)
        self._outages = 0
        self._paused_until = 0.0
        self._sleep: trio.CancelScope | None = None  # run()'s sleep, while it sleeps
        self._sweep_at = 0.0  # when run()'s sleep ends at the latest

    # ---- one attempt -----------------------------------------------------------

    async def send(self, data: dict[str, Any]) -> Outcome:
        """One delivery of am's hook data; never raises for am's answers."""
        if not self.link.up:
            return Outcome("later", "the manager (am) cannot be reached", unavailable=True)
        try:
            reply = await self.link.call("am_hook_api", "handle_hook", data, timeout=AM_TIMEOUT)
        except AmUnavailable as exc:
            return Outcome("later", str(exc), unavailable=True)
        except AmRefused as exc:
            state = "refused" if exc.kind in PERMANENT else "later"
            return Outcome(state, f"{exc.kind}: {exc.message}")
        return Outcome("recorded", reply=reply)

    # ---- the loop --------------------------------------------------------------

    def wake(self) -> None:
        """Something new to deliver: a pass now."""
        self._wake.set()

    async def on_connect(self) -> None:
        """AmClient callback: am is back, so everything held back is due now."""
        self._held.clear()
        self._outages = 0
        self._paused_until = 0.0
        self.wake()

    def queued(self, path: str, reason: str) -> None:
        """A post-receive event af just queued after a failed attempt: retried
        after the first backoff (or as soon as am is back)."""
        self._hold(path, reason)

    def watch(self, path: str) -> None:
        """An intent just written ahead of a push: looked at if its push ends
        without its post-receive reaching am (see :meth:`forget`)."""
        self._watched[path] = (0, trio.current_time() + WATCH_FIRST)
        self._due_by(self._watched[path][1])

    def forget(self, path: str) -> None:
        """The intent at ``path`` is settled (recorded, queued or dropped): the
        look :meth:`watch` asked for is no longer due (no pass for it)."""
        if self._watched.pop(path, None) is not None and self._sleep is not None:
            self._sleep.deadline = self._next_due()

    def _backoff(self, failures: int) -> float:
        base = max(self.link.retry, 0.2)
        delay = min(BACKOFF_CAP, base * 2.0 ** max(failures - 1, 0))
        return delay * random.uniform(0.9, 1.1)

    def _due_by(self, when: float) -> None:
        """Make run()'s sleep end by ``when`` (no pass before then)."""
        if self._sleep is not None and when < self._sleep.deadline:
            self._sleep.deadline = when

    def _next_due(self) -> float:
        """When the next pass is due: a retry, a look at an intent, the end of a
        pause, or the sweep."""
        now = trio.current_time()
        due = [self._sweep_at]
        due += [t for _, t in self._held.values()]
        due += [t for _, t in self._watched.values()]
        if self._paused_until > now:
            due.append(self._paused_until)
        return min(due)

    async def run(self) -> None:
        """Deliver and settle when there is something to do (see the module
        docstring); asleep otherwise. Forever."""
        while True:
            self._wake = trio.Event()
            await self.settle()
            self._sweep_at = trio.current_time() + SWEEP
            with trio.move_on_at(self._next_due()) as self._sleep:
                await self._wake.wait()
            self._sleep = None

    async def settle(self) -> int:
        """One pass over the queued events, then the intents; how many were recorded."""
        done = 0
        queued = await trio.to_thread.run_sync(spool.pending, self.spool_dir)
        intents = await trio.to_thread.run_sync(spool.intents, self.spool_dir)
        # Forget the files that went (delivered by post-receive, removed by hand).
        for table, paths in ((self._held, {*queued, *intents}), (self._watched, set(intents))):
            for gone in set(table) - paths:
                del table[gone]
        for path in queued:
            outcome = await self._queued(path)
            done += outcome == "recorded"
            if outcome == "stop":
                break  # am is away: intents whose refs never moved are still settled
        for path in intents:
            outcome = await self._intent(path)
            done += outcome == "recorded"
            if outcome == "stop":
                break
        return done

    def _due(self, path: str) -> bool:
        now = trio.current_time()
        if now < self._paused_until:
            return False
        held = self._held.get(path)
        return held is None or now >= held[1]

    async def _queued(self, path: str) -> str:
        if not self._due(path):
            return "held"
        try:
            record = await trio.to_thread.run_sync(spool.read, path)
            data = await self.prepare(record["request"])
        except FileNotFoundError:
            return "gone"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            await self._park(path, f"unreadable: {exc}", None)
            return "parked"
        return await self._deliver(path, data)

    async def _intent(self, path: str) -> str:
        try:
            record = await trio.to_thread.run_sync(spool.read, path)
            request = record["request"]
            push = record.get("push") or {}
            if push:
                if pushid.alive(push.get("pid"), push.get("start")):
                    self._look_later(path)
                    return "running"
            elif (age := _age(record)) < ORPHAN_AGE:
                self._watched[path] = (0, trio.current_time() + ORPHAN_AGE - age)
                return "running"
            self._watched.pop(path, None)
            data = self.build(request)
        except FileNotFoundError:
            return "gone"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            await self._park(path, f"unreadable: {exc}", None)
            return "parked"
        try:
            moved = await trio.to_thread.run_sync(
                refstate.moved_refs, data["git_dir"], data["refs"]
            )
        except OSError as exc:
            self._hold(path, f"cannot read the refs: {exc}")
            return "held"
        if not moved:
            await trio.to_thread.run_sync(spool.drop_intent, self.spool_dir, data["event_id"])
            self.discarded += 1
            log.info("push_not_applied", repo=data["repo"], event_id=data["event_id"])
            return "discarded"
        if not self._due(path):
            return "held"
        try:
            data = await self.prepare(post_receive_request(request, moved))
        except ValueError as exc:
            await self._park(path, f"unreadable: {exc}", data["event_id"])
            return "parked"
        log.info("intent_settled", repo=data["repo"], event_id=data["event_id"], refs=len(moved))
        return await self._deliver(path, data)

    async def _deliver(self, path: str, data: dict[str, Any]) -> str:
        outcome = await self.send(data)
        event_id = data["event_id"]
        if outcome.state == "recorded":
            await trio.to_thread.run_sync(spool.remove, path)
            await trio.to_thread.run_sync(spool.drop_intent, self.spool_dir, event_id)
            self._held.pop(path, None)
            self._outages = 0
            self.delivered += 1
            log.info("push_delivered", repo=data["repo"], event_id=event_id)
            return "recorded"
        if outcome.state == "refused":
            await self._park(path, outcome.reason, event_id)
            return "parked"
        if outcome.unavailable:
            self._outages += 1
            self._paused_until = trio.current_time() + self._backoff(self._outages)
            self.last_error = outcome.reason
            return "stop"
        self._hold(path, outcome.reason)
        return "held"

    def _look_later(self, path: str) -> None:
        looks = self._watched.get(path, (0, 0.0))[0] + 1
        delay = min(WATCH_CAP, WATCH_FIRST * 2.0**looks)
        self._watched[path] = (looks, trio.current_time() + delay)

    def _hold(self, path: str, reason: str) -> None:
        failures = self._held.get(path, (0, 0.0))[0] + 1
        self._held[path] = (failures, trio.current_time() + self._backoff(failures))
        self._due_by(self._held[path][1])
        self.last_error = reason
        log.warning("delivery_failed", path=path, failures=failures, reason=reason)

    async def _park(self, path: str, reason: str, event_id: str | None) -> None:
        try:
            await trio.to_thread.run_sync(spool.park, path, reason, self.spool_dir)
        except FileNotFoundError:
            return
        except OSError as exc:  # the disk is full: keep it where it is, try again later
            self._hold(path, f"cannot move to failed/: {exc}")
            return
        if event_id:
            await trio.to_thread.run_sync(spool.drop_intent, self.spool_dir, event_id)
        self._held.pop(path, None)
        self.parked += 1
        self.last_error = reason
        log.error("push_dead_letter", path=path, event_id=event_id or "-", reason=reason)


def post_receive_request(request: dict[str, Any], refs: list[dict[str, Any]]) -> dict[str, Any]:
    """The post-receive request of a push from its pre-receive request and the
    updates that happened (the quarantine is gone by now: its variables too)."""
    env = request.get("env")
    env = (
        {k: v for k, v in env.items() if k not in gitops.QUARANTINE_VARS}
        if isinstance(env, dict)
        else env
    )
    stdin = "".join(f"{r['old']} {r['new']} {r['ref']}\n" for r in refs)
    return {**request, "hook": "post-receive", "stdin": stdin, "env": env}


def _age(record: dict[str, Any]) -> float:
    written = record.get("time")
    return time.time() - float(written) if isinstance(written, (int, float)) else ORPHAN_AGE
