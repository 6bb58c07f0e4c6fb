"""The CPU time a server spends, counted over every process it runs: sshd and
each session it forks (the forced command, git, the hooks), and the daemons.

    with ServerCpu([sshd.pid, am.pid, af.pid]) as cpu:
        wall_ms, cpu_ms = cpu.measure(lambda: run_git_ls_remote())

The processes are put in a cgroup of their own (cgroup v2, or v1's cpuacct
controller), which every child they fork joins; the cgroup's counter is read
before and after. Where no cgroup can be made, their process trees are read from
/proc instead: the CPU of each live process, plus what each has collected from
the children it reaped (cutime, cstime), in clock ticks (10 ms).

`measure` waits, after the client's command returns, until every process the
operation started has exited (the cgroup is back to the processes it began
with), so work the server does after answering (a session's teardown, the
forced command's exit) is counted too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ServerCpu"]

SETTLE_TIMEOUT = 10.0
_TICK = os.sysconf("SC_CLK_TCK")


def _cgroup2_root() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return Path(fields[4])
    return None


def _cpuacct_root() -> Path | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            if fields[sep + 1] == "cgroup" and "cpuacct" in fields[-1].split(","):
                return Path(fields[4])
    return None


class ServerCpu:
    """See the module docstring. `how` says which way it counts."""

    def __init__(
        self, pids: Sequence[int], name: str = "applikant-bench", *, cgroup: bool = True
    ) -> None:
        self.roots = list(pids)
        self.group: Path | None = None
        self.how = "proc"
        found = ((_cgroup2_root(), "cgroup2"), (_cpuacct_root(), "cgroup1-cpuacct"))
        for root, how in found if cgroup else ():
            if root is None:
                continue
            group = root / f"{name}-{os.getpid()}-{os.urandom(3).hex()}"
            try:
                group.mkdir()
                for pid in self.roots:
                    (group / "cgroup.procs").write_text(f"{pid}\n")
            except OSError:
                _remove(group)
                continue
            self.group, self.how = group, how
            break
        self.baseline = len(self._pids())

    def __enter__(self) -> ServerCpu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def usage_ms(self) -> float:
        """CPU milliseconds (user + system) the processes have used so far."""
        if self.how == "cgroup2":
            assert self.group is not None
            for line in (self.group / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1000
            raise RuntimeError("no usage_usec in cpu.stat")
        if self.how == "cgroup1-cpuacct":
            assert self.group is not None
            return int((self.group / "cpuacct.usage").read_text()) / 1e6
        return sum(_ticks(pid) for pid in self._pids()) * 1000 / _TICK

    def measure(self, fn: Callable[[], object]) -> tuple[float, float]:
        """(wall ms of `fn`, server CPU ms until what it started has ended)."""
        self.settle()
        before = self.usage_ms()
        start = time.perf_counter()
        fn()
        wall = (time.perf_counter() - start) * 1000
        self.settle()
        return wall, self.usage_ms() - before

    def settle(self) -> None:
        """Wait until only the processes of the start remain (sessions ended)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while len(self._pids()) > self.baseline and time.monotonic() < deadline:
            time.sleep(0.002)

    def _pids(self) -> list[int]:
        if self.group is not None:
            text = (self.group / "cgroup.procs").read_text()
            return [int(p) for p in text.split()]
        return _tree(self.roots)

    def close(self) -> None:
        """Remove the cgroup (its processes must have ended, or they move to the root)."""
        if self.group is not None:
            _remove(self.group)
            self.group = None


def _remove(group: Path) -> None:
    """Move what is left to the parent group and remove `group`."""
    try:
        procs = (group / "cgroup.procs").read_text().split()
        for pid in procs:
            try:
                (group.parent / "cgroup.procs").write_text(f"{pid}\n")
            except OSError:
                pass  # it ended meanwhile
        group.rmdir()
    except OSError:
        pass


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of `pid` (0 when it is gone)."""
    fields = _stat(pid)
    if fields is None:
        return 0
    return sum(int(v) for v in fields[11:15])


def _tree(roots: Sequence[int]) -> list[int]:
    """`roots` and all their live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    out: list[int] = []
    todo = [pid for pid in roots if _stat(pid) is not None]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out
