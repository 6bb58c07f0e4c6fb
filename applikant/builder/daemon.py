"""ab, the build runner daemon: `applikant start ab` runs `setup`.

ab takes builds from am's queue (`am_builds`) and runs them with `run_build`,
at most `[builder].concurrency` at once:

- It keeps a link to am (`applikant.amclient`, as af and aw do). Each time
  it (re)connects, it subscribes to am's change events (local service `ab_events`) and says
  `hello` with the builds it still runs: am interrupts the others it had on
  this node (failed "interrupted", or queued again: `[builder].on_interrupt`).
  A fresh ab runs nothing, so a build left running by an ab that was killed
  is settled as soon as ab is back (and earlier, when am sees ab's node go
  down).
- It asks for work (`take`) when am announces a build (`build.queued`), when
  a build of its own ends, and every `POLL` seconds in case an event was lost.
- The source of a build is the bare repository on this host
  (`<[af].repo_root>/owner/name.git`), or, with `[builder].source_url` set,
  that URL with `owner/name.git` appended (git fetches from either).
- Log lines go to am as they come, in batches: one `append_log` call at a time
  per build, carrying every line that came while the previous one was on its
  way (calls, not casts, so that the last lines are stored before `finish`,
  which a cast could overtake). The answer says whether cancel was asked;
  `build.cancel` events say so sooner. Should am be away, lines wait (at most
  `BUFFER_LINES`; then the build's output pipe fills and it waits too).
- The result goes to am with `finish`, retried until am takes it. On SIGTERM
  the running builds are stopped and cleaned up and am is told they were
  interrupted (`release`).
"""

from __future__ import annotations

import os
from typing import Any

import trio

from applikant import envconfig
from applikant.amclient import AmClient, AmError, AmRefused, AmUnavailable
from applikant.builder.models import Build, BuildStatus, utcnow
from applikant.builder.runner import run_build
from applikant.builder.settings import BuilderSettings
from applikant.config import Config
from applikant.logs import EventLog
from applikant.node.node import CallContext, Node

__all__ = ["Runner", "setup"]

log = EventLog("ab")

EVENTS_SERVICE = "ab_events"
AM_TIMEOUT = 15.0
POLL = 5.0  # seconds between looks at the queue when no event comes
BATCH_LINES = 2000  # lines per append_log call
BUFFER_LINES = 20000  # lines waiting for am before the build is slowed down


class _LogSender:
    """The log lines of one run, sent to am in order, in batches."""

    def __init__(self, runner: Runner, build: Build, cancel: trio.Event) -> None:
        self.runner = runner
        self.build = build
        self.cancel = cancel
        self.pending: list[str] = []
        self.more = trio.Event()
        self.room = trio.Event()
        self.closed = False
        self.lost = False  # am says the build is no longer ours: stop it, drop lines

    async def add(self, line: str) -> None:
        while len(self.pending) >= BUFFER_LINES and not self.lost:
            self.room = trio.Event()
            await self.room.wait()
        if not self.lost:
            self.pending.append(line)
            self.more.set()

    async def run(self) -> None:
        """Send until closed and everything is sent (or the build was lost)."""
        while True:
            if not self.pending:
                if self.closed:
                    return
                self.more = trio.Event()
                await self.more.wait()
                continue
            batch = self.pending[:BATCH_LINES]
            try:
                answer = await self.runner.call(
                    "append_log",
                    {"build": self.build.id, "attempt": self.build.attempt, "lines": batch},
                )
            except AmUnavailable:
                await trio.sleep(self.runner.link.retry)
                continue
            except AmRefused as exc:
                self._lose(exc)
                return
            del self.pending[: len(batch)]
            self.room.set()
            if isinstance(answer, dict) and answer.get("cancel"):
                self.cancel.set()

    def _lose(self, exc: AmRefused) -> None:
        log.warning("build_lost", build=self.build.id, kind=exc.kind, reason=exc.message)
        self.lost = True
        self.pending.clear()
        self.room.set()
        self.cancel.set()

    def close(self) -> None:
        self.closed = True
        self.more.set()


class Runner:
    """ab's state: the link to am, the builds running here."""

    def __init__(self, node: Node, config: Config) -> None:
        self.node = node
        builder: BuilderSettings = config.builder
        self.settings = builder.resolved(config.node.data_dir)
        self.repo_root = config.path(config.af.repo_root, "repos")
        self.link = AmClient(
            node, envconfig.am_nodes(config.raw), component="ab", retry=config.af.am_retry
        )
        self.running: dict[str, trio.Event] = {}  # build id -> its cancel event
        self.settled: set[str] = set()  # finished here, result not yet taken by am
        self.wake = trio.Event()
        self.done = 0  # builds run to the end here (status, tests)
        self.link.subscribe(EVENTS_SERVICE, timeout=AM_TIMEOUT)
        self.link.on_connect(self.on_connect)

    # ---- am -----------------------------------------------------------------------

    async def call(self, method: str, args: dict[str, Any]) -> Any:
        return await self.link.call("am_builds", method, args, timeout=AM_TIMEOUT)

    async def on_connect(self) -> None:
        """AmClient callback, after the subscription to am's events: settle what
        am thinks runs here."""
        answer = await self.call(
            "hello", {"on_interrupt": self.settings.on_interrupt, "running": sorted(self.running)}
        )
        for build in answer.get("interrupted", []):
            log.warning("build_interrupted", build=build["id"], status=build["status"])
        self.wake.set()

    async def changed(self, ctx: CallContext, event: Any) -> None:
        """`ab_events.changed`: am's change events."""
        if not isinstance(event, dict):
            return
        kind = event.get("kind")
        if kind == "build.queued":
            self.wake.set()
        elif kind == "build.cancel" and event.get("runner") == self.node.name:
            cancel = self.running.get(str(event.get("build")))
            if cancel is not None:
                cancel.set()

    async def status(self, ctx: CallContext, args: Any) -> dict[str, Any]:
        """`ab_status.status` (local): what runs here."""
        return {
            "am_up": self.link.up,
            "running": sorted(self.running),
            "done": self.done,
            "concurrency": self.settings.concurrency,
            "backend": self.settings.backend,
        }

    # ---- the queue ----------------------------------------------------------------

    async def take_loop(self, nursery: trio.Nursery) -> None:
        """Forever: when woken (or every POLL s), take builds while there is room."""
        while True:
            with trio.move_on_after(POLL):
                await self.wake.wait()
            self.wake = trio.Event()
            free = self.settings.concurrency - len(self.running)
            if not self.link.up or free <= 0:
                continue
            try:
                taken = await self.call("take", {"count": free})
            except AmError as exc:
                log.warning("take_failed", reason=str(exc))
                continue
            for data in taken:
                build = Build.model_validate(data)
                self.running[build.id] = trio.Event()
                nursery.start_soon(self.run_one, build)

    def source(self, build: Build) -> str:
        if self.settings.source_url:
            return self.settings.source_url.rstrip("/") + "/" + build.repo + ".git"
        return os.path.join(self.repo_root, build.repo + ".git")

    async def run_one(self, build: Build) -> None:
        """Run one build, stream its log, report its end."""
        cancel = self.running[build.id]
        sender = _LogSender(self, build, cancel)
        log.info(
            "build_start",
            build=build.id,
            repo=build.repo,
            commit=build.commit[:12],
            attempt=build.attempt,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sender.run)
                try:
                    result = await run_build(
                        build.spec(self.source(build)),
                        sender.add,
                        settings=self.settings,
                        cancel=cancel,
                    )
                finally:
                    sender.close()
        except trio.Cancelled:
            # ab is stopping: the build was stopped and cleaned up by run_build;
            # am hears of it through `release` (or hello on the next start).
            raise
        except Exception as exc:  # a bug here must not leave the build running in am
            log.error("build_crashed", build=build.id, error=f"{type(exc).__name__}: {exc}")
            from applikant.builder.models import BuildResult

            now = utcnow()
            result = BuildResult(
                status=BuildStatus.FAILED,
                started_at=now,
                finished_at=now,
                reason=f"the runner failed: {type(exc).__name__}",
            )
        if not sender.lost:
            await self._report(build, result.model_dump(mode="json"))
        del self.running[build.id]
        self.done += 1
        log.info(
            "build_end",
            build=build.id,
            status=result.status.value,
            exit_code=result.exit_code,
            seconds=round(result.duration, 3),
        )
        self.wake.set()

    async def _report(self, build: Build, result: dict[str, Any]) -> None:
        """`finish`, again until am has it (or says the build is no longer ours)."""
        while True:
            try:
                await self.call(
                    "finish", {"build": build.id, "attempt": build.attempt, "result": result}
                )
                return
            except AmUnavailable as exc:
                log.warning("finish_waiting", build=build.id, reason=str(exc))
                await trio.sleep(self.link.retry)
            except AmRefused as exc:
                log.warning("finish_refused", build=build.id, kind=exc.kind, reason=exc.message)
                return

    async def release(self) -> None:
        """On the way out: am interrupts what ran here (briefly; hello settles it otherwise)."""
        if not self.running or not self.link.up:
            return
        with trio.move_on_after(2.0):
            try:
                await self.call("release", {"why": "interrupted (ab stopped)"})
            except AmError:
                pass

    async def serve(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.link.run)
                nursery.start_soon(self.take_loop, nursery)
                task_status.started()
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self.release()


async def setup(node: Node, config: Config, nursery: trio.Nursery) -> None:
    """`applikant start ab`: serve `ab_events` and `ab_status`, run builds."""
    runner = Runner(node, config)
    node.register_local(EVENTS_SERVICE, {"changed": runner.changed})
    node.register_local("ab_status", {"status": runner.status})
    os.makedirs(runner.settings.builds_root, mode=0o711, exist_ok=True)
    await nursery.start(runner.serve)
    log.info(
        "ab_started",
        am=runner.link.am_node,
        concurrency=runner.settings.concurrency,
        backend=runner.settings.backend,
        builds_root=runner.settings.builds_root,
        on_interrupt=runner.settings.on_interrupt,
    )
