"""`am_builds`: the build queue as a service, for people (CLI, aw) and runners (ab).

Methods (args is one map; `actor` as in am_user_db; `build` is build-42, #42 or 42):

| method | args | result | who |
|---|---|---|---|
| list | repo?, status?, limit?, before? | [Build], newest first | readers of the repo; without repo: admins all, others what they can read |
| get | build | Build | readers of its repo |
| log | build, after?, limit? | {lines: [[seq, line]], next, status, final, truncated, total} | readers |
| cancel | build | Build | writers of its repo |
| rerun | build | Build (the new one) | writers of its repo |
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
"""

from __future__ import annotations

import os
from typing import Any, Literal

import trio
from pydantic import Field

from applikant import gitops
from applikant.logs import EventLog
from applikant.manager import requests as rq
from applikant.manager.errors import Forbidden, ServiceError
from applikant.manager.names import is_zero_id
from applikant.manager.runtime import Actor, Manager
from applikant.manager.service import Service, dump
from applikant.node.node import CallContext, NodeDownEvent

__all__ = ["RUNNER_GRACE", "SCRIPT", "BuildsService", "enqueue_builds"]

log = EventLog("am")

RUNNER_GRACE = 30.0  # seconds after am starts for runners to say hello
SCRIPT = ".applikant/build.sh"


async def _has_script(req: rq.HookCall, commit: str) -> bool:
    """Whether `commit` has build.sh, asked of git here when af did not say
    (only possible when am shares the git host's file system)."""
    if not req.git_dir or not os.path.isdir(req.git_dir):
        return False
    found = await trio.to_thread.run_sync(gitops.has_path, req.git_dir, commit, SCRIPT, req.env)
    return found is True


async def enqueue_builds(m: Manager, req: rq.HookCall, node: str) -> list[str]:
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
            m.writer.enqueue_builds,
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
    if len(builds) == 1:
        return [f"build #{builds[0].number} queued"]
    return [f"build #{b.number} queued for {b.ref.removeprefix('refs/heads/')}" for b in builds]


class ListBuilds(rq.Read):
    repo: str | None = None
    status: str | None = None
    limit: int = 50
    before: int | None = None


class BuildRef(rq.Read):
    build: str | int


class ReadLog(rq.Read):
    build: str | int
    after: int = 0
    limit: int = 5000


class BuildAction(rq.Mutation):
    build: str | int


class Hello(rq.Read):
    on_interrupt: Literal["fail", "requeue"] | None = None
    running: list[str] = Field(default_factory=list, max_length=1000)


class Take(rq.Read):
    count: int = 1


class AppendLog(rq.Read):
    build: str
    attempt: int
    lines: list[str] = Field(max_length=5000)


class Finish(rq.Read):
    build: str
    attempt: int
    result: dict[str, Any]


class Release(rq.Read):
    why: str = Field(default="interrupted (the runner stopped)", max_length=200)


class BuildsService(Service):
    NAME = "am_builds"
    METHODS = (
        "list",
        "get",
        "log",
        "cancel",
        "rerun",
        "counts",
        "hello",
        "take",
        "append_log",
        "finish",
        "release",
    )

    def __init__(self, manager: Manager, on_interrupt: str = "fail") -> None:
        super().__init__(manager)
        self.default_policy = on_interrupt
        self.policies: dict[str, str] = {}  # runner node -> its on_interrupt

    # ---- people -----------------------------------------------------------------

    def _readable(self, actor: Actor, repo: str) -> bool:
        return actor.is_admin or self.m.reader.check_access(actor.id, repo, "read").allowed

    def _require_build(self, actor: Actor, build: str | int, level: str) -> Any:
        found = self.m.reader.get_build(build)
        self.m.require_repo(actor, found.repo, level)
        return found

    async def list(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(ListBuilds, args, self.where(ctx))
        actor = self.m.actor(req.actor)
        if req.repo is not None:
            self.m.require_repo(actor, req.repo, "read")
        found = await self.m.bulk_read(
            self.m.bulk.list_builds,
            repo=req.repo,
            status=req.status,
            limit=req.limit,
            before=req.before,
        )
        if req.repo is None and not actor.is_admin:
            found = [b for b in found if self._readable(actor, b.repo)]
        return dump(found)

    async def get(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(BuildRef, args, self.where(ctx))
        return dump(self._require_build(self.m.actor(req.actor), req.build, "read"))

    async def log(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(ReadLog, args, self.where(ctx))
        self._require_build(self.m.actor(req.actor), req.build, "read")
        return await self.m.bulk_read(
            self.m.bulk.read_build_log, req.build, after=req.after, limit=req.limit
        )

    async def cancel(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(BuildAction, args, self.where(ctx))
        self._require_build(self.m.actor(req.actor), req.build, "write")
        build, _ = await self.m.write(
            self.m.writer.cancel_build, req.build, actor=req.actor, node=ctx.caller
        )
        log.info("build_cancel", build=build.id, status=build.status.value, actor=req.actor)
        return dump(build)

    async def rerun(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(BuildAction, args, self.where(ctx))
        old = self._require_build(self.m.actor(req.actor), req.build, "write")
        build, _ = await self.m.write(
            self.m.writer.rerun_build, req.build, actor=req.actor, node=ctx.caller
        )
        log.info("build_rerun", build=build.id, of=old.id, actor=req.actor)
        return dump(build)

    async def counts(self, ctx: CallContext, args: Any) -> Any:
        return self.m.reader.build_counts()

    # ---- runners ----------------------------------------------------------------

    def _require_runner(self, req: rq.Read) -> None:
        if req.actor != "system":
            raise Forbidden("only runners (the cluster itself) may run builds")

    async def _interrupt(self, runner: str, keep: list[str], why: str) -> list[Any]:
        policy = self.policies.get(runner, self.default_policy)
        changed, _ = await self.m.write_reserved(
            self.m.writer.interrupt_builds,
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

    async def hello(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(Hello, args, self.where(ctx))
        self._require_runner(req)
        if req.on_interrupt:
            self.policies[ctx.caller] = req.on_interrupt
        changed = await self._interrupt(ctx.caller, req.running, "interrupted")
        log.info(
            "runner_hello", runner=ctx.caller, running=len(req.running), interrupted=len(changed)
        )
        return {"interrupted": dump(changed)}

    async def take(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(Take, args, self.where(ctx))
        self._require_runner(req)
        taken, _ = await self.m.write(
            self.m.writer.take_builds, ctx.caller, req.count, actor="system"
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

    async def append_log(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(AppendLog, args, self.where(ctx))
        self._require_runner(req)
        answer, _ = await self.m.write_reserved(
            self.m.writer.append_build_log,
            req.build,
            req.lines,
            runner=ctx.caller,
            attempt=req.attempt,
            actor="system",
        )
        return answer

    async def finish(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(Finish, args, self.where(ctx))
        self._require_runner(req)
        build, _ = await self.m.write_reserved(
            self.m.writer.finish_build,
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

    async def release(self, ctx: CallContext, args: Any) -> Any:
        req = rq.parse(Release, args, self.where(ctx))
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
            if runner in self.m.reader.running_runners():
                await self._interrupt(runner, [], why)
        except ServiceError as exc:
            log.error("build_interrupt_failed", runner=runner, reason=exc.message)

    async def _sweep_after_start(self) -> None:
        await trio.sleep(RUNNER_GRACE)
        up = set(self.m.node.nodes())
        for runner in self.m.reader.running_runners():
            if runner not in up:
                await self._runner_down(
                    runner, f"interrupted (runner {runner} did not come back after am restarted)"
                )
