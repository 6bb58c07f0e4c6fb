"""The supervisor on its own: ab dying mid-build ends the build."""

from __future__ import annotations

import json
import subprocess
import sys

from applikant.builder.runner import SUPERVISOR

from .conftest import alive


def start(script: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", SUPERVISOR],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    config = {
        "argv": ["sh", "-c", script],
        "cwd": "/",
        "env": {"PATH": "/usr/bin:/bin"},
        "uid": None,
        "gid": None,
        "rlimits": {},
        "grace": 0.2,
    }
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(config).encode() + b"\n")
    proc.stdin.flush()
    return proc


def read_pids(proc: subprocess.Popen, n: int) -> list[int]:
    assert proc.stdout is not None
    return [int(proc.stdout.readline().split()[1]) for _ in range(n)]


def test_eof_on_stdin_kills_everything() -> None:
    # What ab's death looks like to the supervisor: its stdin pipe closes.
    proc = start(
        "sleep 300 & echo PID $!; setsid sh -c 'sleep 301 & echo PID $!' & echo PID $$; wait"
    )
    pids = read_pids(proc, 3)
    assert all(alive(p) for p in pids)
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    report = json.loads(proc.stderr.read().splitlines()[-1])
    assert report["killed"] and report["leftover"] == 0 and report["subreaper"]
    assert not any(alive(p) for p in pids)
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()


def test_sigterm_is_a_stop_too() -> None:
    proc = start("trap '' TERM; echo PID $$; while :; do sleep 0.05; done")
    pids = read_pids(proc, 1)
    proc.terminate()
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    report = json.loads(proc.stderr.read().splitlines()[-1])
    assert report["returncode"] == -9 and report["killed"]
    assert not alive(pids[0])
    proc.stdin.close()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()


def test_sigterm_at_once_is_a_stop_too() -> None:
    # build.sh's first act is the SIGTERM: it reaches the supervisor around the
    # moment it starts waiting (ab cancelling a build it just started). Whenever
    # it lands, it is a stop, never an error.
    proc = start("trap '' TERM; kill -TERM $PPID; echo PID $$; while :; do sleep 0.05; done")
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    report = json.loads(proc.stderr.read().splitlines()[-1])
    assert report["error"] is None
    assert report["killed"] and report["returncode"] == -9 and report["leftover"] == 0
    proc.stdin.close()  # type: ignore[union-attr]
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()


def test_a_program_that_cannot_start_is_reported() -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", SUPERVISOR],
        capture_output=True,
        input=json.dumps(
            {"argv": ["/nonexistent/build.sh"], "cwd": "/", "env": {}, "uid": None, "gid": None}
        ).encode()
        + b"\n",
        timeout=10,
        check=True,
    )
    report = json.loads(proc.stderr.splitlines()[-1])
    assert report["error"].startswith("FileNotFoundError")
    assert report["returncode"] is None


def test_fork_bomb_within_nproc_is_cleaned_up() -> None:
    # Many short-lived forks racing the killer: the loop converges (leftover 0 means
    # within the supervisor's own deadline).
    proc = start(
        "for i in $(seq 50); do (while :; do sleep 0.01 & wait; done) & done; echo PID $$; wait"
    )
    read_pids(proc, 1)
    proc.stdin.close()  # type: ignore[union-attr]
    assert proc.wait(15) == 0
    report = json.loads(proc.stderr.read().splitlines()[-1])  # type: ignore[union-attr]
    assert report["leftover"] == 0
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
