"""make run's supervisor: dead children are started again with backoff, and said so."""

from __future__ import annotations

import signal
import sys

from applikant import procs
from applikant.cli.supervise import Supervisor, describe_exit


class Fake:
    def __init__(self, n: int) -> None:
        self.n = n
        self.up = True
        self.returncode: int | None = None

    def alive(self) -> bool:
        return self.up

    def die(self, code: int) -> None:
        self.up, self.returncode = False, code


def test_restarts_with_growing_backoff_reset_by_a_stable_run() -> None:
    now = [0.0]
    lines: list[str] = []
    started: list[Fake] = []

    def start() -> Fake:
        started.append(Fake(len(started)))
        return started[-1]

    sup = Supervisor(lines.append, base=1, cap=4, stable=60, clock=lambda: now[0])
    first = sup.add("am", start, "/var/log/am.log")
    assert first is started[0]
    sup.check()
    assert lines == []
    for delay in (1, 2, 4, 4):  # doubling, capped
        started[-1].die(-9)
        sup.check()
        assert lines[-1] == (
            f"am stopped (killed by SIGKILL) after 0 s; restarting it in {delay} s; "
            "see /var/log/am.log"
        )
        now[0] += delay - 0.01
        sup.check()
        assert len(started) == 1 + len(lines) // 2  # not yet
        now[0] += 0.01
        sup.check()
        assert lines[-1].startswith("am restarted (restart #")
    now[0] += 61  # a minute up: the next death starts over at 1 s
    started[-1].die(1)
    sup.check()
    assert "(exit status 1) after 61 s; restarting it in 1 s" in lines[-1]


def test_a_failing_start_is_tried_again() -> None:
    now = [0.0]
    lines: list[str] = []
    fail = [False]

    def start() -> Fake:
        if fail[0]:
            raise OSError("no such file")
        return Fake(0)

    sup = Supervisor(lines.append, base=1, clock=lambda: now[0])
    sup.add("aw", start).die(1)
    fail[0] = True
    sup.check()
    now[0] += 1
    sup.check()
    assert lines[-1] == "aw could not be started: no such file"
    sup.check()  # the old handle is still dead: another wait, longer
    assert "restarting it in 2 s" in lines[-1]


def test_describe_exit_of_real_processes() -> None:
    proc = procs.Proc([sys.executable, "-c", "import sys; sys.exit(3)"])
    proc.popen.wait()
    assert describe_exit(proc) == "exit status 3"
    proc = procs.Proc([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.signal(signal.SIGTERM)
    proc.popen.wait()
    assert describe_exit(proc) == "killed by SIGTERM"
    assert describe_exit(object()) == "gone"
