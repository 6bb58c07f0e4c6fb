"""Hosts made of network namespaces, for multi-host tests on one machine.

`Network(["git", "manager"], tmp)` makes one namespace per host and one more as the
switch (a bridge), joins each host to the switch with a veth pair, and gives the
hosts 10.77.0.2, 10.77.0.3, ... (/24), loopback up everywhere. Both ends of every
veth are created directly inside namespaces, so nothing is added to the machine's
own network; a host's namespace has no route but its /24 and loopback, so a process
started in it can reach nothing else.

`run(host, argv)` starts a process inside a host (`ip netns exec`), tracked and
stopped by PID at `close()`; `cut(host)` / `heal(host)` bring the host's switch port
down and up (packets are dropped silently, like a pulled cable); `throttle(host,
rate)` makes its uplink slow (tc's token bucket filter); `close()` stops
every process, then deletes the namespaces of this network, and only those
(names carry a random suffix, so parallel runs never collide).

Needs root and a kernel that allows network namespaces: `unavailable()` says why
not, for a skip that CI reports.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.wait import TIMEOUT, wait_until

PREFIX = "akmh"
SUBNET = "10.77.0"
FIRST_HOST = 2


def _ip(
    *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, input=stdin)
    if check and proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc


_unavailable: list[str | None] = []


def unavailable() -> str | None:
    """Why network namespaces cannot be made here (None when they can): tried once,
    by making and deleting one."""
    if _unavailable:
        return _unavailable[0]
    reason = None
    if shutil.which("ip") is None:
        reason = "the ip command (iproute2) is not installed"
    elif os.geteuid() != 0:
        reason = "network namespaces need root (ip netns add)"
    else:
        name = f"{PREFIX}{secrets.token_hex(3)}-probe"
        made = _ip("netns", "add", name, check=False)
        if made.returncode != 0:
            reason = f"the kernel refuses network namespaces: {made.stderr.strip()}"
        else:
            bridge = _ip("-n", name, "link", "add", "br0", "type", "bridge", check=False)
            if bridge.returncode != 0:
                reason = f"no bridge devices in a namespace: {bridge.stderr.strip()}"
            _ip("netns", "del", name, check=False)
    _unavailable.append(reason)
    return reason


@dataclass(frozen=True)
class Host:
    label: str
    ns: str  # the namespace's name
    ip: str
    port: str  # its veth's end on the switch


class NsProc:
    """A process inside a namespace. Its stdout (when piped) is read by a thread into
    `lines` and copied to the log; stderr goes to the log. Stopped by PID only."""

    def __init__(
        self,
        argv: Sequence[str],
        ns: str,
        *,
        env: dict[str, str],
        log_path: Path,
        stdin: bool = False,
        stdout: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab", buffering=0)  # noqa: SIM115 - lives with the process
        self.lines: list[str] = []
        self._cond = threading.Condition()
        # `ip netns exec` enters the namespace and then execs argv: the PID is argv's.
        self.popen = subprocess.Popen(
            ["ip", "netns", "exec", ns, *self.argv],
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else self._log,
            stderr=self._log,
        )
        self.pid = self.popen.pid
        self._reader: threading.Thread | None = None
        if stdout:
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            try:
                self._log.write(b"stdout: " + raw)
            except ValueError:  # log closed at stop
                pass
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(
        self, match: str | Callable[[str], bool], timeout: float = TIMEOUT, start: int = 0
    ) -> str:
        """The first stdout line (from index `start`) that starts with `match` (or for
        which it returns true); AssertionError with the log if none comes in time."""
        test = match if callable(match) else (lambda line: line.startswith(match))
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if test(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or (
                    not self.alive() and (self._reader is None or not self._reader.is_alive())
                ):
                    break
                self._cond.wait(min(left, 0.2))
        raise AssertionError(
            f"no line matching {match!r} from {self.argv} within "
            f"{timeout} s; log:\n{self.log_text()}"
        )

    def send(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, grace: float = 5.0) -> int | None:
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        for pipe in (self.popen.stdin, self.popen.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass
        if self._reader is not None:
            self._reader.join(2)
        self._log.close()
        return self.popen.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class Network:
    """N hosts on one switch; see the module's docstring. Use as a context manager
    (or call close()) so that everything is removed also when a test fails."""

    def __init__(self, labels: Sequence[str], tmp: Path) -> None:
        if len(set(labels)) != len(labels) or not 0 < len(labels) <= 200:
            raise ValueError(f"host labels must be unique, 1 to 200 of them: {labels}")
        self.tmp = tmp
        self.suffix = secrets.token_hex(3)
        self.stem = f"{PREFIX}{self.suffix}-"
        self.switch = f"{self.stem}sw"
        self.hosts = {
            label: Host(
                label, f"{self.stem}{label}", f"{SUBNET}.{FIRST_HOST + i}", f"p{FIRST_HOST + i}"
            )
            for i, label in enumerate(labels)
        }
        self.procs: list[NsProc] = []
        self._made: list[str] = []
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _netns_add(self, name: str) -> None:
        _ip("netns", "add", name)
        self._made.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def _build(self) -> None:
        self._netns_add(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for h in self.hosts.values():
            self._netns_add(h.ns)
            _ip(
                "link",
                "add",
                "eth0",
                "netns",
                h.ns,
                "type",
                "veth",
                "peer",
                "name",
                h.port,
                "netns",
                self.switch,
            )
            _ip("-n", self.switch, "link", "set", h.port, "master", "br0", "up")
            _ip("-n", h.ns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
            _ip("-n", h.ns, "link", "set", "eth0", "up")

    # ---- hosts and processes -------------------------------------------------

    def host(self, label: str) -> Host:
        return self.hosts[label]

    def run(
        self,
        label: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        name: str | None = None,
        stdin: bool = False,
        stdout: bool = False,
    ) -> NsProc:
        """Start argv inside host `label`; stopped at close(). The log is
        <tmp>/<label>-<name>-<n>.log (stderr, and stdout unless piped)."""
        stem = f"{label}-{name or Path(argv[0]).name}"
        n = sum(1 for p in self.procs if p.log_path.name.startswith(stem + "-"))
        full_env = dict(os.environ, **(env or {}))
        proc = NsProc(
            argv,
            self.hosts[label].ns,
            env=full_env,
            log_path=self.tmp / f"{stem}-{n}.log",
            stdin=stdin,
            stdout=stdout,
        )
        self.procs.append(proc)
        return proc

    def exec(
        self,
        label: str,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        timeout: float = 30,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a short command inside host `label` and wait for it."""
        full_env = dict(os.environ, **(env or {}))
        return subprocess.run(
            ["ip", "netns", "exec", self.hosts[label].ns, *argv],
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
        )

    def listening(self, label: str) -> list[tuple[str, int, int | None]]:
        """The TCP sockets listening in host `label`: (address, port, pid or None)."""
        out = self.exec(label, ["ss", "-Hltnp"]).stdout
        found = []
        for line in out.splitlines():
            fields = line.split()
            # State Recv-Q Send-Q Local:Port Peer:Port [users:(("python",pid=12,fd=3))]
            addr, _, port = fields[3].rpartition(":")
            pid = None
            if len(fields) > 5 and "pid=" in fields[5]:
                pid = int(fields[5].split("pid=")[1].split(",")[0])
            found.append((addr.strip("[]"), int(port), pid))
        return found

    def wait_listening(
        self, label: str, port: int, timeout: float = TIMEOUT, proc: NsProc | None = None
    ) -> None:
        """Wait until something listens on `port` in host `label`."""

        def listens() -> bool:
            if proc is not None and not proc.alive():
                raise AssertionError(f"{proc.argv} exited before listening:\n{proc.log_text()}")
            return any(p == port for _, p, _ in self.listening(label))

        wait_until(listens, timeout, f"something to listen on port {port} in {label}")

    # ---- partitions ------------------------------------------------------------

    def cut(self, label: str) -> None:
        """Unplug host `label` from the switch: its packets are dropped silently."""
        _ip("-n", self.switch, "link", "set", self.hosts[label].port, "down")

    def heal(self, label: str) -> None:
        _ip("-n", self.switch, "link", "set", self.hosts[label].port, "up")
        # Wait for the carrier, so the first packet after heal() is not lost.
        wait_until(
            lambda: (
                "LOWER_UP" in _ip("-n", self.hosts[label].ns, "-o", "link", "show", "eth0").stdout
            ),
            what=f"{label}'s link to come back up",
            every=0.01,
        )

    def throttle(self, label: str, rate: str, *, inbound: bool = False) -> None:
        """Limit what host `label` sends (or, `inbound`, receives) to `rate` (tc's
        token bucket, e.g. "2mbit"): a slow link, so that a transfer is still running
        when a test acts. Each host's link has its own queue."""
        subprocess.run(
            [
                *("tc", "-n", *self._link_end(label, inbound), "root"),
                *("tbf", "rate", rate, "burst", "16kb", "latency", "1s"),
            ],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def unthrottle(self, label: str, *, inbound: bool = False) -> None:
        subprocess.run(
            ["tc", "-n", *self._link_end(label, inbound, "del"), "root"],
            capture_output=True,
            timeout=10,
        )

    def _link_end(self, label: str, inbound: bool, verb: str = "replace") -> list[str]:
        """Where a host's traffic in one direction queues: its own eth0 (outbound)
        or its port on the switch (inbound)."""
        h = self.hosts[label]
        if inbound:
            return [self.switch, "qdisc", verb, "dev", h.port]
        return [h.ns, "qdisc", verb, "dev", "eth0"]

    # ---- teardown --------------------------------------------------------------

    def close(self) -> None:
        """Stop our processes (by PID), then delete this network's namespaces; the
        veths go with them. Safe to call twice and after a half-made network."""
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        listed = _ip("netns", "list", check=False).stdout.split("\n")
        ours = {line.split()[0] for line in listed if line.startswith(self.stem)}
        for name in sorted(ours | set(self._made)):
            _ip("netns", "del", name, check=False)
        self._made.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
