"""`make run` as a newcomer meets it: the whole suite starts, the printed steps
work to the letter (key, repo, clone and push over SSH, clone over HTTP), a
daemon killed is started again (and said so), and only Ctrl-C stops everything
it started."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from applikant import procs

ROOT = Path(__file__).resolve().parent.parent


class Lines:
    """make's output, line by line, read by a thread (select() cannot see what a
    text stream has already buffered)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def until(self, marker: str, timeout: float) -> list[str]:
        lines: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            lines.append(line)
            self.seen.append(line)
            if marker in line:
                return lines
        raise AssertionError(f"make run printed no {marker!r}:\n" + "\n".join(self.seen))


def descendant(pid: int, wanted: str) -> int:
    """The pid of the process under `pid` whose command line ends with `wanted`
    (a daemon make run started for this test)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            parents[int(entry)] = int(stat[stat.rfind(b")") + 2 :].split()[1])
    for child, parent in parents.items():
        ancestor = parent
        while ancestor not in (0, 1, pid):
            ancestor = parents.get(ancestor, 0)
        if ancestor == pid:
            try:
                argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b" ".join(a for a in argv if a).decode().endswith(wanted):
                return child
    raise AssertionError(f"no {wanted!r} under make run")


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    applikant = str(ROOT / ".venv" / "bin" / "applikant")
    return subprocess.run([applikant, *args], env=env, capture_output=True, text=True, timeout=60)


def wait_ok(args: list[str], env: dict[str, str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        r = run_cli(args, env)
        if r.returncode == 0:
            return r.stdout
        if time.monotonic() > deadline:
            raise AssertionError(f"applikant {' '.join(args)}: {r.stderr}")
        time.sleep(0.5)


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="needs OpenSSH's server")
def test_make_run_and_its_printed_steps(tmp_path: Path) -> None:
    ports = {name: procs.free_port() for name in ("WEB", "SSH", "PORTMAPPER")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIKANT_", "GIT_"))}
    env.update({f"APPLIKANT_RUN_{k}_PORT": str(v) for k, v in ports.items()})
    env["APPLIKANT_RUN_DIR"] = str(tmp_path / "var")
    make = subprocess.Popen(
        ["make", "-s", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = Lines(make)
        lines = output.until("Try it", timeout=100)
        steps = output.until("demo-http", timeout=10)
        password = (
            next(line for line in lines if "password:" in line).split("password:")[1].split()[0]
        )
        script = "\n".join(line.strip() for line in steps if line.startswith("  "))
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert (tmp_path / "var" / "demo-http" / "README.md").read_text() == "hello\n"
        web = f"http://127.0.0.1:{ports['WEB']}"
        page = httpx.get(f"{web}/login")
        assert page.status_code == 200
        token = page.text.split('name="csrf" value="')[1].split('"')[0]
        login = httpx.post(
            f"{web}/login",
            cookies=page.cookies,
            follow_redirects=False,
            data={"login": "root", "password": password, "csrf": token},
        )
        assert login.status_code in (302, 303), login.text[:500]

        # A daemon that dies is started again, and make run says so.
        cli = {**env, "APPLIKANT_CONFIG": str(tmp_path / "var" / "applikant.toml")}
        am = descendant(make.pid, "start am")
        os.kill(am, signal.SIGKILL)
        output.until("am stopped (killed by SIGKILL)", timeout=15)
        output.until("am restarted", timeout=15)
        status = wait_ok(["status", "--json"], cli)
        names = [n["node"] for n in json.loads(status)["nodes"]]
        assert names.count("am@localhost") == 1, names
        doctor = {c["check"]: c for c in json.loads(run_cli(["doctor", "--json"], cli).stdout)}
        assert doctor["sshd (make run)"]["status"] == "ok", doctor
        assert doctor["dead letters"]["status"] == "ok"
        assert make.poll() is None
    finally:
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            make.wait(30)
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
                make.wait()
            if make.stdout:
                make.stdout.close()
    for port in ports.values():
        assert not listening(port), f"something still listens on {port}"
