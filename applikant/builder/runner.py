"""Running one build: `await run_build(spec, on_line, settings=...)`.

What a run does, in order, each step ending the build as failed when it fails:

1. Who builds: when ab runs as root, the build user (`settings.build_user`,
   made when missing); otherwise ab's own account, and a log line says the
   build is not isolated. With the build user, every `protected_paths` entry
   (am's data dir...) must be out of its reach, or the build is refused.
2. docker backend: the engine must answer (`docker version`).
3. A fresh work dir (see workdir.py), a checkout of exactly `spec.commit`,
   `.applikant/build.sh` present in it, everything handed to the build user.
4. build.sh runs: `./.applikant/build.sh` when executable (its #! line
   counts), else `sh .applikant/build.sh`; cwd the checkout; stdin /dev/null;
   stdout and stderr together into the log; a clean environment of PATH
   (`settings.path`), HOME (the work dir), TMPDIR (its tmp/), LANG=C.UTF-8,
   `settings.env`, and APPLIKANT_REPO, APPLIKANT_REF, APPLIKANT_COMMIT,
   APPLIKANT_BUILD_ID; its own session and process group; resource limits
   (settings.limits); in the process backend under a supervisor process
   (supervise.py) that kills every process the build started, daemonized
   ones included, when it ends or is stopped.
5. It is stopped (SIGTERM, `kill_grace` seconds, SIGKILL to all) when
   `settings.timeout` passes (status timed-out), when `cancel` is set
   (cancelled), or when the caller's cancel scope is cancelled (then the
   build is stopped and cleaned up under a shield and Cancelled propagates:
   the caller records the build as cancelled).
6. The work dir is removed, whatever happened.

Log lines go to `on_line` as they come, at most `log_limit` bytes (see
logcap.py); lines of the runner's own start with "applikant: ". A slow
`on_line` slows the build down (its output pipe fills) rather than losing
lines.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from . import docker
from .logcap import LogCap
from .models import BuildResult, BuildSpec, BuildStatus, utcnow
from .settings import BuilderSettings
from .users import BuildUser, BuildUserError, ensure_build_user, reachable, traversable
from .workdir import CheckoutError, checkout, chown_tree, make_workdir, remove_tree

__all__ = ["SCRIPT", "LineSink", "build_env", "run_build"]

LineSink = Callable[[str], Awaitable[None]]

SCRIPT = ".applikant/build.sh"
SUPERVISOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervise.py")
# Beyond kill_grace: how long the supervisor (or docker) may take to report
# after being told to stop before it is killed itself.
STOP_SLACK = 15.0

_users: dict[str, BuildUser] = {}


class _Refused(Exception):
    """The build cannot run; the message is the result's reason."""


async def _discard(line: str) -> None:
    pass


def build_env(spec: BuildSpec, settings: BuilderSettings, workdir: str) -> dict[str, str]:
    """The whole environment of build.sh in the process backend."""
    env = dict(settings.env)
    env.update(
        PATH=settings.path,
        HOME=workdir,
        TMPDIR=os.path.join(workdir, "tmp"),
        LANG="C.UTF-8",
        APPLIKANT_REPO=spec.repo,
        APPLIKANT_REF=spec.ref,
        APPLIKANT_COMMIT=spec.commit,
        APPLIKANT_BUILD_ID=spec.build_id,
    )
    return env


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


_SIGNAL_WORDS: dict[int, str] = {
    signal.SIGXCPU: " (CPU time limit)",
    signal.SIGXFSZ: " (file size limit)",
}


async def _build_user(settings: BuilderSettings) -> BuildUser | None:
    """The account to switch to, or None to stay ab's (when not root)."""
    if os.geteuid() != 0:
        return None
    name = settings.build_user
    if name not in _users:
        _users[name] = await trio.to_thread.run_sync(
            ensure_build_user, name, settings.create_build_user
        )
    return _users[name]


class _Run:
    def __init__(
        self,
        spec: BuildSpec,
        settings: BuilderSettings,
        on_line: LineSink,
        cancel: trio.Event | None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.emit = on_line
        self.cancel = cancel
        self.cap = LogCap(settings.log_limit, settings.max_line)
        self.workdir: str | None = None
        self.stopped: BuildStatus | None = None  # TIMED_OUT or CANCELLED, once stopping
        self.sink_error: Exception | None = None  # what on_line raised

    async def note(self, text: str) -> None:
        await self.emit(self.cap.note(text))

    # ---- steps 1-3 --------------------------------------------------------

    async def prepare(self) -> tuple[BuildUser, list[str]]:
        """Who runs it and the argv of build.sh; _Refused when it cannot run."""
        s = self.settings
        try:
            switch_to = await _build_user(s)
        except BuildUserError as exc:
            raise _Refused(str(exc)) from None
        user = switch_to or BuildUser.current()
        if switch_to is None:
            await self.note(f"not isolated: ab is not root, so the build runs as {user.name}")
        else:
            for path in s.protected_paths:
                if reachable(path, user):
                    raise _Refused(f"isolation: the build user {user.name} could read {path}")
        if s.backend == "docker":
            try:
                await docker.check_engine(s)
            except docker.DockerUnavailable as exc:
                raise _Refused(f"docker backend: {exc}") from None
        self.workdir = await trio.to_thread.run_sync(
            make_workdir, s.builds_root, self.spec.build_id
        )
        blocked = traversable(self.workdir, user) if switch_to else None
        if blocked is not None and blocked != self.workdir:
            raise _Refused(
                f"the build user {user.name} cannot enter {blocked}, above the builds root"
            )
        src = os.path.join(self.workdir, "src")
        try:
            await checkout(self.spec, src, s.checkout_timeout)
        except CheckoutError as exc:
            raise _Refused(f"checkout of {self.spec.commit[:12]} failed: {exc}") from None
        script = os.path.join(src, SCRIPT)
        if not os.path.isfile(script) or os.path.islink(os.path.dirname(script)):
            raise _Refused(f"no {SCRIPT} in commit {self.spec.commit[:12]}")
        os.mkdir(os.path.join(self.workdir, "tmp"), 0o700)
        if switch_to is not None:
            await trio.to_thread.run_sync(chown_tree, self.workdir, user.uid, user.gid)
        executable = not os.path.islink(script) and os.stat(script).st_mode & 0o111
        return user, ([f"./{SCRIPT}"] if executable else ["sh", SCRIPT])

    # ---- steps 4-5 --------------------------------------------------------

    async def execute(self, user: BuildUser, script: list[str]) -> tuple[int | None, str]:
        """Run build.sh to its end or until stopped: (returncode, problem)."""
        assert self.workdir is not None
        s = self.settings
        env = build_env(self.spec, s, self.workdir)
        if s.backend == "docker":
            argv = docker.run_argv(
                s,
                build_id=self.spec.build_id,
                workdir=self.workdir,
                uid=user.uid,
                gid=user.gid,
                env=env,
                script=script,
            )
            proc = await trio.lowlevel.open_process(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        else:
            config = {
                "argv": script,
                "cwd": os.path.join(self.workdir, "src"),
                "env": env,
                "uid": user.uid if os.geteuid() == 0 else None,
                "gid": user.gid if os.geteuid() == 0 else None,
                "umask": 0o022,
                "rlimits": s.limits.rlimits(),
                "grace": s.kill_grace,
            }
            proc = await trio.lowlevel.open_process(
                [sys.executable, "-I", "-S", SUPERVISOR],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            assert proc.stdin is not None
            await proc.stdin.send_all(json.dumps(config).encode() + b"\n")
        report: dict[str, Any] = {}
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read_log, proc, nursery.cancel_scope)
                if proc.stderr is not None:
                    nursery.start_soon(self._read_report, proc, report)
                await self._wait(proc)
                # Everything the build started is gone, so the pipes are at their
                # end; should one still be held open, do not wait for it forever.
                nursery.cancel_scope.deadline = trio.current_time() + STOP_SLACK
        finally:
            with trio.CancelScope(shield=True):
                await self._stop(proc)
        if self.sink_error is not None:
            raise self.sink_error
        if s.backend == "docker":
            rc = proc.returncode
            if rc == 125 and self.stopped is None:
                return None, "docker run failed (exit 125)"
            return rc, ""
        if report.get("leftover"):
            await self.note(f"{report['leftover']} processes of the build could not be killed")
        if report.get("error"):
            return None, f"could not start build.sh: {report['error']}"
        if "returncode" not in report:
            return None, f"the build supervisor failed (exit {proc.returncode})"
        return report["returncode"], ""

    async def _wait(self, proc: trio.Process) -> None:
        """Until proc exits, the timeout passes or cancel is set; then stop it."""
        with trio.move_on_after(self.settings.timeout) as deadline:
            async with trio.open_nursery() as nursery:

                async def cancelled() -> None:
                    assert self.cancel is not None
                    await self.cancel.wait()
                    self.stopped = BuildStatus.CANCELLED
                    nursery.cancel_scope.cancel()

                if self.cancel is not None:
                    nursery.start_soon(cancelled)
                await proc.wait()
                nursery.cancel_scope.cancel()
        if deadline.cancelled_caught and self.stopped is None:
            self.stopped = BuildStatus.TIMED_OUT
        if self.stopped is not None:
            await self._stop(proc)

    async def _stop(self, proc: trio.Process) -> None:
        """Make sure build.sh and all it started are gone (idempotent)."""
        with trio.move_on_after(self.settings.kill_grace + STOP_SLACK):
            if proc.returncode is None:
                if self.settings.backend == "docker":
                    await self._docker_rm()
                elif proc.stdin is not None:
                    try:
                        await proc.stdin.send_all(b"kill\n")
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        pass
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        # Whatever the client (or a dead supervisor) left in its process group
        # would hold the log pipe open.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if proc.stdin is not None:
            await proc.stdin.aclose()

    async def _docker_rm(self) -> None:
        with trio.move_on_after(self.settings.docker.engine_timeout):
            await trio.run_process(
                docker.remove_argv(self.settings, self.spec.build_id),
                stdin=b"",
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )

    async def _read_log(self, proc: trio.Process, scope: trio.CancelScope) -> None:
        assert proc.stdout is not None
        try:
            async with proc.stdout:
                while chunk := await proc.stdout.receive_some(65536):
                    for line in self.cap.feed(chunk):
                        await self.emit(line)
            for line in self.cap.close():
                await self.emit(line)
        except Exception as exc:
            # Raised again, bare, once the build is stopped (not in a group).
            self.sink_error = exc
            scope.cancel()

    async def _read_report(self, proc: trio.Process, report: dict[str, Any]) -> None:
        assert proc.stderr is not None
        data = bytearray()
        async with proc.stderr:
            while chunk := await proc.stderr.receive_some(65536):
                if len(data) < 1 << 20:
                    data += chunk
        for line in reversed(data.decode("utf-8", "replace").splitlines()):
            try:
                report.update(json.loads(line))
                return
            except ValueError:
                continue

    # ---- the outcome --------------------------------------------------------

    async def outcome(self, returncode: int | None, problem: str) -> tuple[BuildStatus, str]:
        if self.stopped is BuildStatus.TIMED_OUT:
            reason = f"timed out after {self.settings.timeout:g} s"
        elif self.stopped is BuildStatus.CANCELLED:
            reason = "cancelled"
        elif problem:
            reason = problem
        elif returncode == 0:
            return BuildStatus.SUCCEEDED, ""
        elif returncode is not None and returncode < 0:
            reason = f"killed by {_signal_name(-returncode)}{_SIGNAL_WORDS.get(-returncode, '')}"
        else:
            reason = f"exited with code {returncode}"
        await self.note(reason)
        return self.stopped or BuildStatus.FAILED, reason


async def run_build(
    spec: BuildSpec,
    on_line: LineSink | None = None,
    *,
    settings: BuilderSettings | None = None,
    cancel: trio.Event | None = None,
) -> BuildResult:
    """Run one build to its end and say how it ended.

    `on_line(line)` is awaited for each log line (no newline) as it comes.
    `settings.builds_root` must be set (see BuilderSettings.resolved).
    Never raises for what the build or its commit does (that is the result);
    raises trio.Cancelled when the caller's scope is cancelled, after stopping
    the build and removing its work dir, and whatever `on_line` raises (the
    build is stopped and cleaned up first).
    """
    settings = settings or BuilderSettings()
    if not settings.builds_root:
        raise ValueError("settings.builds_root is not set (use settings.resolved(data_dir))")
    run = _Run(spec, settings, on_line or _discard, cancel)
    started = utcnow()
    returncode: int | None = None
    try:
        try:
            user, script = await run.prepare()
        except _Refused as exc:
            problem = str(exc)
        else:
            returncode, problem = await run.execute(user, script)
        status, reason = await run.outcome(returncode, problem)
    finally:
        if run.workdir is not None:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(remove_tree, run.workdir)
    return BuildResult(
        status=status,
        started_at=started,
        finished_at=utcnow(),
        exit_code=returncode,
        reason=reason,
        log_size=run.cap.size,
        log_truncated=run.cap.truncated,
    )
