"""`am_builds`: the build queue as a service, for people (CLI, aw) and runners (ab).

Methods (args is one map; `actor` as in am_user_db; `build` is build-42, #42 or 42):

| method | args | result | who |
|---|---|---|---|
| list | repo?, status?, limit?, cursor? | page of Build, newest first | readers of the repo; without repo: admins all, others what they can read (on the page) |
| get | build, repo? | Build | readers of its repo |
| log | build, repo?, after?, limit? | {lines: [[seq, line]], next, status, final, truncated, total} | readers |
| cancel | build, repo? | Build | writers of its repo |
| rerun | build, repo? | Build (the new one) | writers of its repo |
| latest | repo, branch | Build or None: the branch's newest | readers |
| of_commits | repo, commits | {commit: its newest Build} | readers |
| counts | - | {status: n} | anyone |
| hello | on_interrupt?, running: [build ids] | {interrupted: [Build]} | runners (system) |
| take | count | [Build] now running on the caller | runners |
| append_log | build, attempt, lines | {next, cancel} | runners |
| finish | build, attempt, result (a BuildResult's JSON) | Build | runners |
| release | why? | {interrupted: [Build]} | runners (stopping) |

A runner is a node (ab@host): `hello` when it (re)connects says which builds
it still runs; the others am had on it are interrupted, as the runner's
`on_interrupt` says ("fail": failed, reason "interrupted"; "requeue": queued
again). When the runner's node goes down, am does the same to all its running
builds, and when am starts, builds running on a runner that has not come back
within `RUNNER_GRACE` seconds are interrupted too: no build stays running forever.

Runners learn of new builds (and of cancels) through am's change events: they
subscribe (am_user_db.subscribe) and get `build.queued`, `build.cancel`...

The models of the args and answers are applikant.schema.builds (AM_BUILDS).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import trio

from applikant import gitasync
from applikant.builder.models import Build
from applikant.logs import EventLog
from applikant.manager.errors import Forbidden, ServiceError
from applikant.manager.names import is_zero_id
from applikant.manager.runtime import Actor, Manager
from applikant.manager.services.base import Service, dump
from applikant.manager.store.paging import Page
from applikant.node.node import CallContext, NodeDownEvent
from applikant.schema import builds as s
from applikant.schema.base import Read
from applikant.schema.hooks import HookCall

__all__ = ["RUNNER_GRACE", "SCRIPT", "BuildsService", "enqueue_builds"]

log = EventLog("am")

RUNNER_GRACE = 30.0  # seconds after am starts for runners to say hello
SCRIPT = ".applikant/build.sh"


async def _has_script(req: HookCall, commit: str) -> bool:
    """Whether `commit` has build.sh, asked of git here when af did not say
    (only possible when am shares the git host's file system)."""
    if not req.git_dir or not os.path.isdir(req.git_dir):
        return False
    found = await gitasync.has_path(req.git_dir, commit, SCRIPT, req.env)
    return found is True


async def enqueue_builds(m: Manager, req: HookCall, node: str) -> list[str]:
    """post-receive: queue a build per updated branch (not deletions, not tags)
    whose new commit has build.sh; the lines for the pusher. Idempotent with
    the push's event_id, so a spooled event delivered twice queues once."""
    wanted = []
    for ref in req.refs:
        if not ref.ref.startswith("refs/heads/") or is_zero_id(ref.new):
            continue
        if ref.build or (ref.build is None and await _has_script(req, ref.new)):
            wanted.append({"ref": ref.ref, "commit": ref.new})
    if not wanted:
        return []
    try:
        builds, _ = await m.write_reserved(
            m.writer.builds.enqueue,
            req.repo,
            wanted,
            actor=req.user,
            node=node,
            event_id=req.event_id,
            pusher=req.user,
        )
    except ServiceError as exc:
        log.error("builds_not_queued", repo=req.repo, reason=exc.message)
        return [f"builds not queued: {exc.message}"]
    for build in builds:
        log.info("build_queued", build=build.id, repo=build.repo, ref=build.ref)
    return [
        f"build {b.repo} #{b.number} queued for {b.ref.removeprefix('refs/heads/')}: "
        + m.links.build(b.repo, b.number)
        for b in builds
    ]


class BuildsService(Service):
    NAME = "am_builds"
    SCHEMA = s.AM_BUILDS

    def __init__(self, manager: Manager, on_interrupt: str = "fail") -> None:
        super().__init__(manager)
        self.default_policy = on_interrupt
        self.policies: dict[str, str] = {}  # runner node -> its on_interrupt

    # ---- people -----------------------------------------------------------------

    def _readable(self, actor: Actor, repo: str) -> bool:
        return actor.is_admin or self.m.reader.access.check(actor.id, repo, "read").allowed

    def _require_build(
        self, actor: Actor, req: s.BuildRef | s.BuildAction | s.ReadLog, level: str
    ) -> Build:
        found = self.m.reader.builds.get(req.build, req.repo)
        self.m.require_repo(actor, found.repo, level)
        return found

    async def list(self, ctx: CallContext, req: s.ListBuilds) -> Any:
        actor = self.m.actor(req.actor)
        if req.repo is not None:
            self.m.require_repo(actor, req.repo, "read")
        page = await self.m.read_page(
            lambda store: store.builds.page,
            req.limit,
            cursor=req.cursor,
            repo=req.repo,
            status=req.status,
        )
        if req.repo is None and not actor.is_admin:
            page = Page([b for b in page.items if self._readable(actor, b.repo)], page.next)
        return dump(page)

    async def get(self, ctx: CallContext, req: s.BuildRef) -> Any:
        return dump(self._require_build(self.m.actor(req.actor), req, "read"))

    async def log(self, ctx: CallContext, req: s.ReadLog) -> Any:
        found = self._require_build(self.m.actor(req.actor), req, "read")
        return await self.m.bulk_read(
            self.m.bulk.builds.read_log, found.id, after=req.after, limit=req.limit
        )

    async def latest(self, ctx: CallContext, req: s.LatestBuild) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "read")
        return dump(self.m.reader.builds.latest(req.repo, f"refs/heads/{req.branch}"))

    async def of_commits(self, ctx: CallContext, req: s.CommitBuilds) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "read")
        found = await self.m.bulk_read(self.m.bulk.builds.of_commits, req.repo, req.commits)
        return {commit: dump(build) for commit, build in found.items()}

    async def cancel(self, ctx: CallContext, req: s.BuildAction) -> Any:
        found = self._require_build(self.m.actor(req.actor), req, "write")
        build, _ = await self.m.write(
            self.m.writer.builds.cancel, found.id, actor=req.recorded_actor, node=ctx.caller
        )
        log.info(
            "build_cancel", build=build.id, status=build.status.value, actor=req.recorded_actor
        )
        return dump(build)

    async def rerun(self, ctx: CallContext, req: s.BuildAction) -> Any:
        old = self._require_build(self.m.actor(req.actor), req, "write")
        build, _ = await self.m.write(
            self.m.writer.builds.rerun, old.id, actor=req.recorded_actor, node=ctx.caller
        )
        log.info("build_rerun", build=build.id, of=old.id, actor=req.recorded_actor)
        return dump(build)

    async def counts(self, ctx: CallContext, req: None) -> Any:
        return self.m.reader.builds.counts()

    # ---- runners ----------------------------------------------------------------

    def _require_runner(self, req: Read) -> None:
        if req.actor != "system":
            raise Forbidden("only runners (the cluster itself) may run builds")

    async def _interrupt(self, runner: str, keep: Sequence[str], why: str) -> Sequence[Build]:
        policy = self.policies.get(runner, self.default_policy)
        changed, _ = await self.m.write_reserved(
            self.m.writer.builds.interrupt,
            runner,
            policy=policy,
            keep=keep,
            actor="system",
            why=why,
        )
        for build in changed:
            log.warning(
                "build_interrupted",
                build=build.id,
                runner=runner,
                policy=policy,
                status=build.status.value,
                reason=why,
            )
        return changed

    async def hello(self, ctx: CallContext, req: s.Hello) -> Any:
        self._require_runner(req)
        if req.on_interrupt:
            self.policies[ctx.caller] = req.on_interrupt
        changed = await self._interrupt(ctx.caller, req.running, "interrupted")
        log.info(
            "runner_hello", runner=ctx.caller, running=len(req.running), interrupted=len(changed)
        )
        return {"interrupted": dump(changed)}

    async def take(self, ctx: CallContext, req: s.Take) -> Any:
        self._require_runner(req)
        taken, _ = await self.m.write(
            self.m.writer.builds.take, ctx.caller, req.count, actor="system"
        )
        for build in taken:
            log.info(
                "build_started",
                build=build.id,
                repo=build.repo,
                runner=ctx.caller,
                attempt=build.attempt,
            )
        return dump(taken)

    async def append_log(self, ctx: CallContext, req: s.AppendLog) -> Any:
        self._require_runner(req)
        answer, _ = await self.m.write_reserved(
            self.m.writer.builds.append_log,
            req.build,
            req.lines,
            runner=ctx.caller,
            attempt=req.attempt,
            actor="system",
        )
        return answer

    async def finish(self, ctx: CallContext, req: s.Finish) -> Any:
        self._require_runner(req)
        build, _ = await self.m.write_reserved(
            self.m.writer.builds.finish,
            req.build,
            req.result,
            runner=ctx.caller,
            attempt=req.attempt,
            actor="system",
        )
        log.info(
            "build_finished",
            build=build.id,
            status=build.status.value,
            exit_code=build.exit_code,
            runner=ctx.caller,
        )
        return dump(build)

    async def release(self, ctx: CallContext, req: s.Release) -> Any:
        self._require_runner(req)
        return {"interrupted": dump(await self._interrupt(ctx.caller, [], req.why))}

    # ---- runners that go away ------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Interrupt the builds of runners that go down, and, RUNNER_GRACE after
        am starts, of runners that never came back; forever."""
        node = self.m.node
        events = node.monitor()
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sweep_after_start)
            async with events:
                async for event in events:
                    if isinstance(event, NodeDownEvent):
                        await self._runner_down(
                            event.node, f"interrupted (runner {event.node} went down)"
                        )

    async def _runner_down(self, runner: str, why: str) -> None:
        try:
            if runner in self.m.reader.builds.runners():
                await self._interrupt(runner, [], why)
        except ServiceError as exc:
            log.error("build_interrupt_failed", runner=runner, reason=exc.message)

    async def _sweep_after_start(self) -> None:
        await trio.sleep(RUNNER_GRACE)
        up = set(self.m.node.nodes())
        for runner in self.m.reader.builds.runners():
            if runner not in up:
                await self._runner_down(
                    runner, f"interrupted (runner {runner} did not come back after am restarted)"
                )
