"""The per-build supervisor: a small process between ab and build.sh.

ab runs it as `python -I -S supervise.py` (stdlib only, no site: ~15 ms), in a
session of its own. It exists so that a build leaves nothing behind, whatever
ab's threads do, and also when ab dies:

- It makes itself a *child subreaper* (prctl PR_SET_CHILD_SUBREAPER), so every
  process the build starts stays its descendant, also one that double-forks
  and calls setsid() to daemonize: an orphan is re-parented to the nearest
  subreaper, not to init. Killing "all descendants" is then killing the build.
- It starts build.sh in a new process group, as the build user (setgroups([]),
  setgid, setuid), with resource limits (setrlimit in the child: the
  supervisor is single-threaded, so preexec_fn is safe here, unlike in ab),
  stdin /dev/null, stdout and stderr both on the supervisor's stdout (the log
  pipe to ab). The supervisor then lets go of its own copy of that pipe, so
  ab sees end-of-file once the last build process is gone.
- It waits for build.sh to exit, or for a word from ab on stdin: "kill", or
  end-of-file (ab closed the pipe or died). Either ends the build: SIGTERM to
  every descendant, `grace` seconds for build.sh to exit, then SIGKILL.
- At the end, in every case, it kills every descendant left (SIGKILL, found by
  scanning /proc for the parent links, again until none is left, reaping each)
  and writes one JSON line on stderr:
  {"returncode": int|null, "killed": bool, "leftover": int, "subreaper": bool,
   "error": str|null}. `returncode` is build.sh's (negative for a signal);
  `leftover` counts processes still alive after 10 s of killing.

Input: one JSON line on stdin: {"argv", "cwd", "env", "uid", "gid", "umask",
"rlimits": {name: value}, "grace"}; uid and gid null to stay who we are.

Limits of this approach, no cgroups: a process that the build hands to another
daemon (at, cron, systemd-run, ssh to localhost...) is not its descendant;
deny those to the build user. RLIMIT_NPROC counts all processes of the build
user, so builds running at once share it.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
KILL_DEADLINE = 10.0


# SIGTERM from ab (or an operator) stops the build like "kill" does, whenever it
# comes: the handler only sets this flag, and the signal's wakeup byte (a pipe in
# `wait`'s selector) makes the main loop look at it. Raising from the handler
# instead would let a SIGTERM that lands before the loop starts (ab cancelling a
# build just started) escape as an error, with the build not stopped.
_stop_requested = False


def _on_sigterm(signum: int, frame: object) -> None:
    global _stop_requested
    _stop_requested = True


def _set_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _descendants(root: int) -> list[int]:
    """Every process below `root`, from the parent links in /proc."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # The command name may hold spaces and parentheses: the fields after it
        # start after the last ")".
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return found


class Supervisor:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.child: subprocess.Popen | None = None
        self.returncode: int | None = None
        self.killed = False

    def _limits(self) -> None:  # runs in the child, before exec
        for name, value in self.config.get("rlimits", {}).items():
            which = getattr(resource, "RLIMIT_" + name.upper())
            # CPU: SIGXCPU at the soft limit, SIGKILL a second later.
            hard = value + 1 if name == "cpu" else value
            resource.setrlimit(which, (value, hard))

    def start(self) -> None:
        c = self.config
        kwargs: dict = {}
        if c.get("uid") is not None:
            kwargs.update(user=c["uid"], group=c["gid"], extra_groups=[])
        self.child = subprocess.Popen(
            c["argv"],
            cwd=c["cwd"],
            env=c["env"],
            stdin=subprocess.DEVNULL,
            stdout=1,
            stderr=subprocess.STDOUT,
            process_group=0,
            umask=c.get("umask", 0o022),
            preexec_fn=self._limits,
            close_fds=True,
            **kwargs,
        )
        # Our copy of the log pipe would hold ab's reader open: let it go.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)

    def _reap(self) -> None:
        """Collect every exited child (ours, and orphans handed to us)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.child is not None and pid == self.child.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                self.child.returncode = self.returncode

    def _signal_all(self, sig: int) -> int:
        pids = _descendants(os.getpid())
        if self.child is not None:
            try:
                os.killpg(self.child.pid, sig)
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        return len(pids)

    def wait(self, wakeup: int) -> None:
        """Until build.sh exits or ab says to stop (then stop it). `wakeup` is the
        read end of the signal wakeup pipe."""
        assert self.child is not None
        pidfd = os.pidfd_open(self.child.pid)
        sel = selectors.DefaultSelector()
        sel.register(pidfd, selectors.EVENT_READ)
        sel.register(0, selectors.EVENT_READ)
        sel.register(wakeup, selectors.EVENT_READ)
        try:
            while self.returncode is None:
                if _stop_requested:
                    self._stop(sel, pidfd)
                    return
                for key, _ in sel.select():
                    if key.fd == pidfd:
                        self._reap()
                    elif key.fd == wakeup:
                        _drain(wakeup)
                    elif key.fd == 0:
                        data = os.read(0, 4096)
                        if not data or b"kill" in data:
                            self._stop(sel, pidfd)
                            return
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            sel.close()
            os.close(pidfd)

    def _stop(self, sel: selectors.BaseSelector, pidfd: int) -> None:
        # From here on we only clean up: a second SIGTERM must not stop that.
        # Only build.sh's exit may end the grace period below.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.killed = True
        for fd in [fd for fd in sel.get_map() if fd != pidfd]:
            sel.unregister(fd)
        grace = float(self.config.get("grace", 2.0))
        if grace > 0:
            self._signal_all(signal.SIGTERM)
            deadline = time.monotonic() + grace
            while self.returncode is None and (left := deadline - time.monotonic()) > 0:
                if sel.select(left):
                    self._reap()

    def kill_rest(self) -> int:
        """SIGKILL every descendant until none is left; the number still alive
        after KILL_DEADLINE seconds (0 when all went)."""
        deadline = time.monotonic() + KILL_DEADLINE
        while True:
            self._reap()
            if not _descendants(os.getpid()):
                return 0
            if time.monotonic() > deadline:
                return len(_descendants(os.getpid()))
            self._signal_all(signal.SIGKILL)
            time.sleep(0.005)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        pass


def _read_config() -> dict:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(0, 65536)
        if not chunk:
            raise ValueError("no configuration on stdin")
        data += chunk
    return json.loads(data)


def main() -> int:
    subreaper = _set_subreaper()
    report: dict = {
        "returncode": None,
        "killed": False,
        "leftover": 0,
        "subreaper": subreaper,
        "error": None,
    }
    sup: Supervisor | None = None
    wakeup, wakeup_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wakeup_w, warn_on_full_buffer=False)
    try:
        sup = Supervisor(_read_config())
        if _stop_requested:  # stopped before it began: build.sh never runs
            sup.killed = True
        else:
            sup.start()
            sup.wait(wakeup)
    except Exception as exc:  # reported to ab, which records it as the reason
        report["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sup is not None:
        report["leftover"] = sup.kill_rest()
        report["returncode"] = sup.returncode
        report["killed"] = sup.killed
    sys.stderr.write(json.dumps(report) + "\n")
    sys.stderr.flush()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # ab ending us with SIGTERM is the same as "kill" on stdin.
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.exit(main())
