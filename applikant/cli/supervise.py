"""`make run`'s supervisor: a daemon that dies is started again, as systemd's
`Restart=on-failure` does for the installed units.

Each child is something that can be started and tells whether it is alive
(a `procs.Proc`, or `make run`'s sshd). When one is found dead, the supervisor
prints why and when it will be started again, waits (1 s, doubling up to
30 s; back to 1 s once a child has stayed up a minute, systemd's `RestartSec`
with a growing step), starts it and prints that too. The others keep running:
they find a restarted peer by themselves (nodes redial, register again with a
restarted portmapper). Only the caller ends the loop (Ctrl-C in `make run`).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

__all__ = ["Child", "Supervisor", "describe_exit"]


class Handle(Protocol):
    def alive(self) -> bool: ...


H = TypeVar("H", bound=Handle)


@dataclass
class Child:
    """One supervised daemon: how to start it, the running handle, its history."""

    label: str
    start: Callable[[], Handle]
    handle: Handle
    log_path: str = ""
    started_at: float = field(default_factory=time.monotonic)
    restarts: int = 0
    failures: int = 0  # deaths in a row, each less than `stable` seconds after a start
    due: float | None = None  # when it is to be started again


def describe_exit(handle: object) -> str:
    """How a child ended, in words: `exit status 1`, `killed by SIGKILL`."""
    code = getattr(handle, "returncode", None)
    if code is None:
        code = getattr(getattr(handle, "popen", None), "returncode", None)
    if code is None:
        return "gone"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


class Supervisor:
    """Restarts dead children with backoff; see the module docstring."""

    def __init__(
        self,
        say: Callable[[str], None] = print,
        *,
        base: float = 1.0,
        cap: float = 30.0,
        stable: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.say = say
        self.base, self.cap, self.stable = base, cap, stable
        self.clock = clock
        self.children: list[Child] = []

    def add(self, label: str, start: Callable[[], H], log_path: str = "") -> H:
        """Start a child now and watch it from the next :meth:`check` on; its handle."""
        handle = start()
        self.adopt(label, handle, start, log_path)
        return handle

    def adopt(
        self, label: str, handle: Handle, restart: Callable[[], Handle], log_path: str = ""
    ) -> None:
        """Watch a child started already; ``restart()`` starts it again."""
        self.children.append(Child(label, restart, handle, log_path, started_at=self.clock()))

    def check(self) -> None:
        """Notice the dead, start again those whose wait is over."""
        now = self.clock()
        for child in self.children:
            if child.due is None:
                if child.handle.alive():
                    continue
                up = now - child.started_at
                child.failures = 1 if up >= self.stable else child.failures + 1
                delay = min(self.cap, self.base * 2 ** (child.failures - 1))
                child.due = now + delay
                where = f"; see {child.log_path}" if child.log_path else ""
                self.say(
                    f"{child.label} stopped ({describe_exit(child.handle)}) after {up:.0f} s; "
                    f"restarting it in {delay:g} s{where}"
                )
            elif now >= child.due:
                child.due = None
                child.restarts += 1
                child.started_at = now
                try:
                    child.handle = child.start()
                except (OSError, RuntimeError) as exc:
                    self.say(f"{child.label} could not be started: {exc}")
                    continue
                self.say(f"{child.label} restarted (restart #{child.restarts})")

    def run_forever(self, poll: float = 0.5) -> None:
        """Check every `poll` seconds until interrupted (KeyboardInterrupt passes)."""
        while True:
            self.check()
            time.sleep(poll)
