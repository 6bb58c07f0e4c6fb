"""`am_hook_api`: the verdict on a push, and its record.

`handle_hook(data)`, data = {"hook": "pre-receive" | "update" | "post-receive" |
"post-update", "repo": "owner/name", "user": "user-42", "node": the git host's
node, "event_id": a UUID (post-receive), "refs": [{"ref", "old", "new", "ff"}],
"git_dir": path (optional), "env": the hook's quarantine variables (optional)}.
Answer: {"ok": bool, "messages": [lines for the pusher]}, plus for post-receive
"entry" (the audit entry's id) and "duplicate" (it had been recorded before).

- pre-receive / update: one decision per ref (store.branches.decide: write
  access, protected branches, tags). `ff` is whether the update is a
  fast-forward, found by git on the git host (applikant.gitops); when it is null
  and `git_dir` exists here, am asks git itself (only for refs a protection rule
  covers: nothing else depends on it). When it stays unknown and the call says
  `ff_on_request` (af leaves `ff` out until asked: most pushes touch no protected
  branch), the answer is `{"ok": false, "need_ff": [refs], "messages": []}` and
  af asks again with them; otherwise a protected branch is refused. Any refused ref refuses the push, and a `push.denied` entry with
  the reasons goes to the audit log.
- post-receive: records the push (`push`, old/new per ref), once per event_id
  however often it is delivered (af's spool may deliver twice), and hands it on:
  subscribers get `repo.pushed` (with the commits each branch brought, when
  af described them: webhooks' payloads); then queues one build per updated branch whose
  new commit has `.applikant/build.sh` (`build` per ref, found by af), once
  per event_id, and tells the pusher `build #N queued` (services/builds.py).
- post-update: nothing to decide or record.
- Below am's disk reserve a push is refused at pre-receive; the record of a
  push already accepted uses the reserve (Manager.write_reserved).

Each call runs in its own task (the node layer's), concurrently with the others;
when the calling node goes down the task is cancelled, and with it any git
process it started. `stats()` counts calls in flight, the most at once, and
cancellations.

The models of the args and answers are applikant.schema.hooks (AM_HOOK_API).
"""

from __future__ import annotations

import os
from fnmatch import fnmatchcase
from typing import Any

import trio

from applikant import gitasync
from applikant.logs import EventLog
from applikant.manager.errors import NotFound, ServiceError
from applikant.manager.names import is_zero_id
from applikant.manager.runtime import Manager
from applikant.manager.services.base import Service
from applikant.manager.services.builds import enqueue_builds
from applikant.node.node import CallContext
from applikant.schema.hooks import AM_HOOK_API, HookCall

log = EventLog("am")

GIT_PARALLEL = 8  # git processes per hook call
GIT_TIMEOUT = 30.0


async def fast_forward(git_dir: str, old: str, new: str, env: dict[str, str] | None) -> bool | None:
    """gitops.is_fast_forward without blocking the loop; the git process dies
    with the task when it is cancelled."""
    return await gitasync.is_fast_forward(git_dir, old, new, env, GIT_TIMEOUT)


def _is_cancellation(exc: BaseException) -> bool:
    """Cancelled, or a group of nothing but (a nursery's way of passing it on)."""
    if isinstance(exc, trio.Cancelled):
        return True
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        return rest is None
    return False


class HookApi(Service):
    NAME = "am_hook_api"
    SCHEMA = AM_HOOK_API

    def __init__(self, manager: Manager) -> None:
        super().__init__(manager)
        self.in_flight = 0
        self.max_in_flight = 0
        self.handled = 0
        self.cancelled = 0

    async def stats(self, ctx: CallContext, req: None) -> Any:
        return {
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "handled": self.handled,
            "cancelled": self.cancelled,
        }

    async def handle_hook(self, ctx: CallContext, req: HookCall) -> Any:
        node = req.node or ctx.caller
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if req.hook in ("pre-receive", "update"):
                return await self._decide(req, node)
            if req.hook == "post-receive":
                return await self._record(req, node)
            return {"ok": True, "messages": []}
        except BaseException as exc:
            if _is_cancellation(exc):
                self.cancelled += 1
                log.info("hook_cancelled", hook=req.hook, repo=req.repo, user=req.user, peer=node)
            raise
        finally:
            self.in_flight -= 1
            self.handled += 1

    # ---- pre-receive, update ------------------------------------------------

    def _protected_patterns(self, repo: str) -> list[str]:
        try:
            return [rule.pattern for rule in self.m.reader.branches.rules(repo)]
        except ServiceError:
            return []  # no such repository: branches.decide gives the reason

    def _ff_wanted(self, req: HookCall, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The updates whose decision depends on a fast-forward answer not given:
        existing branches a protection rule covers."""
        patterns = self._protected_patterns(req.repo)
        if not patterns:
            return []
        wanted = []
        for update in updates:
            ref = update["refname"]
            if (
                update["is_fast_forward"] is None
                and ref.startswith("refs/heads/")
                and not is_zero_id(update["old"])
                and not is_zero_id(update["new"])
                and any(fnmatchcase(ref[len("refs/heads/") :], p) for p in patterns)
            ):
                wanted.append(update)
        return wanted

    async def _fill_ff(self, req: HookCall, updates: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Ask git for the missing fast-forward answers that a decision depends on,
        when the repository is on this file system; the updates still without one."""
        wanted = self._ff_wanted(req, updates)
        git_dir = req.git_dir
        if not wanted or not git_dir or not os.path.isdir(git_dir):
            return wanted
        limiter = trio.CapacityLimiter(GIT_PARALLEL)

        async def fill(update: dict[str, Any]) -> None:
            async with limiter:
                update["is_fast_forward"] = await fast_forward(
                    git_dir, update["old"], update["new"], req.env
                )

        async with trio.open_nursery() as nursery:
            for update in wanted:
                nursery.start_soon(fill, update)
        return [u for u in wanted if u["is_fast_forward"] is None]

    async def _decide(self, req: HookCall, node: str) -> dict[str, Any]:
        try:
            self.m.check_reserve()  # a push accepted now must fit when it is recorded
        except ServiceError as exc:
            log.warning("push_refused_disk_reserve", repo=req.repo, reason=exc.message)
            return {"ok": False, "messages": [f"push refused: {exc.message}"]}
        updates = [
            {"refname": r.ref, "old": r.old, "new": r.new, "is_fast_forward": r.ff}
            for r in req.refs
        ]
        unknown = await self._fill_ff(req, updates)
        if unknown and req.ff_on_request:
            # The git host asks git only when a decision needs it: say which refs.
            return {"ok": False, "need_ff": [u["refname"] for u in unknown], "messages": []}
        decisions = self.m.reader.branches.decide(req.user, req.repo, updates)
        refused = [(u, d) for u, d in zip(updates, decisions, strict=False) if not d.allowed]
        if not refused:
            return {"ok": True, "messages": []}
        messages = [f"refused {u['refname']}: {d.reason}" for u, d in refused]
        details = {
            "hook": req.hook,
            "refs": [
                {"ref": u["refname"], "old": u["old"], "new": u["new"], "reason": d.reason}
                for u, d in refused
            ],
        }
        try:
            await self.m.write(
                self.m.writer.audit.record,
                "push.denied",
                actor=req.user,
                node=node,
                repo=req.repo,
                details=details,
            )
        except ServiceError as exc:
            # The verdict stands even if the attempt cannot be logged (a garbage user).
            log.warning("push_denied_not_recorded", repo=req.repo, reason=exc.message)
        log.info("push_denied", repo=req.repo, user=req.user, peer=node, refs=len(refused))
        return {"ok": False, "messages": messages}

    # ---- post-receive -------------------------------------------------------

    async def _record(self, req: HookCall, node: str) -> dict[str, Any]:
        updates = [{"refname": r.ref, "old": r.old, "new": r.new} for r in req.refs]
        # What each branch brought (described on the git host): for webhooks.
        pushed = {
            r.ref: r.model_dump(include={"commits", "total_commits", "head_commit"})
            for r in req.refs
            if r.commits is not None
        }
        try:
            entry, events = await self.m.write_reserved(
                self.m.writer.audit.record_push,
                req.repo,
                updates,
                actor=req.user,
                node=node,
                event_id=req.event_id,
                pushed=pushed,
            )
        except NotFound as exc:
            raise NotFound(f"push not recorded: {exc.message}") from None
        duplicate = not events
        if duplicate:
            log.info("push_duplicate", repo=req.repo, event_id=req.event_id)
        messages = await enqueue_builds(self.m, req, node)
        return {"ok": True, "messages": messages, "entry": entry.id, "duplicate": duplicate}
