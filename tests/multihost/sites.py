"""Applikant hosts on a namespace network: one config file per host (and per
variant, e.g. a node with another CA), a portmapper per host, probe and echo
nodes, the CLI run inside a host."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness.netns import Network, NsProc
from harness.wait import TIMEOUT

COOKIE = "multihost-test-cookie-0123456789"
PM_PORT = 4370  # every host has its own network stack: the default port is free
LISTEN_MIN, LISTEN_MAX = 9100, 9199


class Probe:
    """A tests.multihost.probe node: requests over stdin, replies and events on stdout."""

    def __init__(self, proc: NsProc, name: str) -> None:
        self.proc = proc
        self.name = name
        self.port = int(proc.wait_line("READY").split()[1])
        self._ids = itertools.count(1)

    def request(self, op: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        req_id = next(self._ids)
        self.proc.send(json.dumps({"id": req_id, "op": op, **fields}))
        line = self.proc.wait_line(
            lambda s: s.startswith("REPLY ") and json.loads(s[6:])["id"] == req_id, timeout
        )
        return json.loads(line[6:])

    def ok(self, op: str, **fields: Any) -> Any:
        reply = self.request(op, **fields)
        assert reply["ok"], f"{self.name} {op} {fields}: {reply}"
        return reply["value"]

    def mark(self) -> int:
        """A position in the output: wait_event(after=mark) sees only later events."""
        return len(self.proc.lines)

    def events(self, after: int = 0) -> list[dict[str, Any]]:
        return [json.loads(s[6:]) for s in self.proc.lines[after:] if s.startswith("EVENT ")]

    def wait_event(
        self, event: str, timeout: float = TIMEOUT, after: int = 0, **match: Any
    ) -> dict[str, Any]:
        def test(line: str) -> bool:
            if not line.startswith("EVENT "):
                return False
            data = json.loads(line[6:])
            return data["event"] == event and all(data.get(k) == v for k, v in match.items())

        return json.loads(self.proc.wait_line(test, timeout, start=after)[6:])


class Sites:
    """The Applikant side of a Network: configs, portmappers, nodes."""

    def __init__(
        self, net: Network, tmp: Path, *, tick_time: float = 10.0, cookie: str = COOKIE
    ) -> None:
        self.net = net
        self.tmp = tmp
        self.tick_time = tick_time
        self.cookie_file = tmp / "cookie"
        self.cookie_file.write_text(cookie)
        os.chmod(self.cookie_file, 0o600)
        for var in ("APPLIKANT_COOKIE", "APPLIKANT_AM_NODE", "APPLIKANT_AF_NODE"):
            os.environ.pop(var, None)

    def ip(self, label: str) -> str:
        return self.net.host(label).ip

    def long(self, name: str, label: str) -> str:
        """The long node name of `name` on host `label`: name@10.77.0.x."""
        return f"{name}@{self.ip(label)}"

    def config(
        self,
        label: str,
        variant: str = "",
        *,
        tls: dict[str, str] | None = None,
        cookie_file: Path | None = None,
        **dist: Any,
    ) -> Path:
        """Write host `label`'s config (variant: a second file for odd nodes) and
        return its path. Nodes listen on the host's address and register at the
        portmapper on loopback."""
        values: dict[str, Any] = {
            "portmapper_host": "127.0.0.1",
            "portmapper_port": PM_PORT,
            "bind_host": self.ip(label),
            "listen_min": LISTEN_MIN,
            "listen_max": LISTEN_MAX,
            "tick_time": float(self.tick_time),
            "connect_timeout": 2.0,
            "handshake_timeout": 2.0,
            "portmapper_wait": 5.0,
        }
        values.update(dist)
        lines = [
            "[node]",
            f'host = "{self.ip(label)}"',
            f'data_dir = "{self.tmp / label}"',
            f'cookie_file = "{cookie_file or self.cookie_file}"',
            "dev_mode = true",
            "",
            "[dist]",
        ]
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        if tls is not None:
            lines += ["", "[dist.tls]", "enabled = true"]
            lines += [f"{k} = {json.dumps(str(v))}" for k, v in tls.items()]
        path = self.tmp / f"{label}{'-' + variant if variant else ''}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def env(self, label: str, config: Path | None = None) -> dict[str, str]:
        path = config or self.tmp / f"{label}.toml"
        if config is None and not path.exists():
            self.config(label)
        return {"APPLIKANT_CONFIG": str(path), "PYTHONUNBUFFERED": "1"}

    def start_portmapper(
        self, label: str, bind: str | None = "0.0.0.0", config: Path | None = None
    ) -> NsProc:
        """`applikant portmapper --host bind` in host `label` (bind None: the config's)."""
        argv = [sys.executable, "-m", "applikant.cli.main", "portmapper"]
        if bind is not None:
            argv += ["--host", bind]
        proc = self.net.run(label, argv, env=self.env(label, config), name="portmapper")
        self.net.wait_listening(label, PM_PORT, proc=proc)
        return proc

    def start_probe(
        self, label: str, name: str, *globals_: str, config: Path | None = None
    ) -> Probe:
        argv = [sys.executable, "-m", "tests.multihost.probe", name]
        argv += [f"--global={g}" for g in globals_]
        proc = self.net.run(
            label,
            argv,
            env=self.env(label, config),
            name=name.split("@")[0],
            stdin=True,
            stdout=True,
        )
        return Probe(proc, name)

    def start_echo(
        self,
        label: str,
        name: str,
        *globals_: str,
        connect: tuple[str, ...] = (),
        config: Path | None = None,
    ) -> NsProc:
        argv = [sys.executable, "-m", "applikant.node.echo", name]
        argv += [f"--global={g}" for g in globals_] + [f"--connect={c}" for c in connect]
        proc = self.net.run(
            label, argv, env=self.env(label, config), name=name.split("@")[0], stdout=True
        )
        proc.wait_line("READY")
        return proc

    def cli(
        self, label: str, *args: str, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The admin CLI inside host `label` (an ephemeral node there)."""
        return self.net.exec(
            label, [sys.executable, "-m", "applikant.cli.main", *args], env=self.env(label, config)
        )

    def python(
        self, label: str, code: str, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`python -c code` inside host `label`."""
        return self.net.exec(label, [sys.executable, "-c", code], env=self.env(label, config))
