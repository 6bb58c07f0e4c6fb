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
import stat
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from applikant import procs
from harness.wait import wait_until

pytestmark = pytest.mark.slow

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


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def descendant(pid: int, wanted: str) -> int:
    """The pid of the process under `pid` whose command line ends with `wanted`
    (a daemon make run started for this test)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat_line = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            parents[int(entry)] = int(stat_line[stat_line.rfind(b")") + 2 :].split()[1])
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


def wait_ok(args: list[str], env: dict[str, str]) -> str:
    """The output of the first `applikant ARGS` that succeeds (am restarting)."""
    done = wait_until(
        lambda: (r := run_cli(args, env)).returncode == 0 and r,
        what=f"applikant {' '.join(args)} to succeed",
        every=0.5,
    )
    return done.stdout


class MakeRun:
    """One `make run` in its own session, stopped as Ctrl-C would."""

    def __init__(self, env: dict[str, str]) -> None:
        self.make = subprocess.Popen(
            ["make", "-s", "run"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output = Lines(self.make)

    def stop(self) -> None:
        make = self.make
        os.killpg(make.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        try:
            make.wait(30)
        finally:
            if make.poll() is None:
                os.killpg(make.pid, signal.SIGKILL)
                make.wait()
            if make.stdout:
                make.stdout.close()


def log_in(web: str, password: str) -> int:
    page = httpx.get(f"{web}/login")
    assert page.status_code == 200
    token = page.text.split('name="csrf" value="')[1].split('"')[0]
    login = httpx.post(
        f"{web}/login",
        cookies=page.cookies,
        follow_redirects=False,
        data={"login": "root", "password": password, "csrf": token},
    )
    return login.status_code


def assert_private(var: Path) -> None:
    """The data dir is its owner's, am's database and the files beside it 0600."""
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    for name in ("am.sqlite3", "am.sqlite3-wal", "am.sqlite3-shm", "session.key"):
        assert stat.S_IMODE((var / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((var / "cookie").stat().st_mode) == 0o400


def build_as_the_build_user(steps: list[str], tmp_path: Path, env: dict[str, str]) -> None:
    """A push with .applikant/build.sh builds, as the build user, with var/ 0700."""
    exports = next(line for line in steps if "export APPLIKANT_CONFIG=" in line).strip()
    work = tmp_path / "var" / "demo"
    script = work / ".applikant" / "build.sh"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\necho built by $(id -un)\n")
    script.chmod(0o755)
    git = "git -C " + str(work)
    push = subprocess.run(
        [
            "bash",
            "-euo",
            "pipefail",
            "-c",
            f"{git} add .applikant && {git} -c user.name=You -c user.email=you@example.org "
            f"commit -qm build && {git} push -q origin HEAD:main",
        ],
        env={**env, "GIT_SSH_COMMAND": ssh_command(steps)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert push.returncode == 0 and "queued" in push.stderr, push.stderr

    def cli_out(args: str) -> str:
        done = subprocess.run(
            ["bash", "-c", f"{exports}; applikant {args}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return done.stdout if done.returncode == 0 else ""

    def finished() -> dict | None:
        listed = cli_out("build list --repo root/demo --json")
        build = json.loads(listed)[0] if listed else None
        return build if build and build["status"] not in ("queued", "running") else None

    build = wait_until(finished, timeout=120, what="the build to finish")
    log = cli_out(f"build log root/demo#{build['number']}")
    assert build["status"] == "succeeded", log
    assert "built by applikant-build" in log


def ssh_command(steps: list[str]) -> str:
    line = next(line for line in steps if "GIT_SSH_COMMAND=" in line)
    return line.split("GIT_SSH_COMMAND=", 1)[1].strip().strip('"')


@pytest.mark.skipif(not os.path.exists("/usr/sbin/sshd"), reason="needs OpenSSH's server")
# its waits: 100 s for the banner, 120 s for the steps, 120 s for the build, 90 s
# for am's restart, status and doctor, 30 s to stop, twice
@pytest.mark.timeout(720)
def test_make_run_and_its_printed_steps(tmp_path: Path) -> None:
    ports = {name: procs.free_port() for name in ("WEB", "SSH", "PORTMAPPER")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIKANT_", "GIT_"))}
    env.update({f"APPLIKANT_RUN_{k}_PORT": str(v) for k, v in ports.items()})
    env["APPLIKANT_RUN_DIR"] = str(tmp_path / "var")
    web = f"http://127.0.0.1:{ports['WEB']}"
    run = MakeRun(env)
    try:
        lines = run.output.until("Try it", timeout=100)
        steps = run.output.until("demo-http", timeout=10)
        password = (
            next(line for line in lines if "password:" in line).split("password:")[1].split()[0]
        )
        assert f"127.0.0.1:{ports['SSH']}" in "\n".join(lines)  # the ports it uses
        assert f"portmapper 127.0.0.1:{ports['PORTMAPPER']}" in "\n".join(lines)
        exports = [line for line in steps if "APPLIKANT_CONFIG" in line]
        assert len(exports) == 1 and exports[0].strip().startswith("export APPLIKANT_CONFIG=")
        script = "\n".join(line.strip() for line in steps if line.startswith("  "))
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert (tmp_path / "var" / "demo-http" / "README.md").read_text() == "hello\n"
        assert_private(tmp_path / "var")
        if os.geteuid() == 0:
            build_as_the_build_user(steps, tmp_path, env)
        assert log_in(web, password) in (302, 303)

        # A daemon that dies is started again, and make run says so.
        cli = {**env, "APPLIKANT_CONFIG": str(tmp_path / "var" / "applikant.toml")}
        am = descendant(run.make.pid, "start am")
        os.kill(am, signal.SIGKILL)
        run.output.until("am stopped (killed by SIGKILL)", timeout=15)
        run.output.until("am restarted", timeout=15)
        status = wait_ok(["status", "--json"], cli)
        names = [n["node"] for n in json.loads(status)["nodes"]]
        assert names.count("am@localhost") == 1, names
        doctor = {c["check"]: c for c in json.loads(run_cli(["doctor", "--json"], cli).stdout)}
        assert doctor["sshd (make run)"]["status"] == "ok", doctor
        assert doctor["dead letters"]["status"] == "ok"
        assert run.make.poll() is None
    finally:
        run.stop()
    for port in ports.values():
        assert not listening(port), f"something still listens on {port}"

    # The next `make run` keeps root's password, and says how to set a new one.
    again = MakeRun(env)
    try:
        lines = again.output.until("Try it", timeout=100)
        assert not [line for line in lines if "password:" in line]
        assert any("applikant user passwd root" in line for line in lines)
        assert log_in(web, password) in (302, 303)
    finally:
        again.stop()
