"""The supervisor on its own: ab dying mid-build ends the build."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from applikant.builder.runner import SUPERVISOR

from .conftest import alive


@contextmanager
def supervised(script: str) -> Iterator[subprocess.Popen[bytes]]:
    """The supervisor running `sh -c script`. However the test ends, its stdin is
    closed (the supervisor then kills the build), it is reaped and its pipes are
    closed: a failed assertion must not leave open pipes for the garbage
    collector to report in some later test."""
    with subprocess.Popen(
        [sys.executable, "-I", "-S", SUPERVISOR],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        assert proc.stdin is not None
        try:
            config = {
                "argv": ["sh", "-c", script],
                "cwd": "/",
                "env": {"PATH": "/usr/bin:/bin"},
                "uid": None,
                "gid": None,
                "rlimits": {},
                "grace": 0.2,
            }
            proc.stdin.write(json.dumps(config).encode() + b"\n")
            proc.stdin.flush()
            yield proc
        finally:
            if proc.poll() is None:
                proc.stdin.close()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def read_pids(proc: subprocess.Popen[bytes], n: int) -> list[int]:
    assert proc.stdout is not None
    return [int(proc.stdout.readline().split()[1]) for _ in range(n)]


def report(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The supervisor's last word: one JSON line on stderr."""
    assert proc.stderr is not None
    return json.loads(proc.stderr.read().splitlines()[-1])


def test_eof_on_stdin_kills_everything() -> None:
    # What ab's death looks like to the supervisor: its stdin pipe closes.
    with supervised(
        "sleep 300 & echo PID $!; setsid sh -c 'sleep 301 & echo PID $!' & echo PID $$; wait"
    ) as proc:
        pids = read_pids(proc, 3)
        assert all(alive(p) for p in pids)
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(30) == 0
        got = report(proc)
    assert got["killed"] and got["leftover"] == 0 and got["subreaper"]
    assert not any(alive(p) for p in pids)


def test_sigterm_is_a_stop_too() -> None:
    with supervised("trap '' TERM; echo PID $$; while :; do sleep 0.05; done") as proc:
        pids = read_pids(proc, 1)
        proc.terminate()
        assert proc.wait(30) == 0
        got = report(proc)
    assert got["returncode"] == -9 and got["killed"]
    assert not alive(pids[0])


def test_sigterm_at_once_is_a_stop_too() -> None:
    # build.sh's first act is the SIGTERM: it reaches the supervisor around the
    # moment it starts waiting (ab cancelling a build it just started). Whenever
    # it lands, it is a stop, never an error.
    with supervised(
        "trap '' TERM; kill -TERM $PPID; echo PID $$; while :; do sleep 0.05; done"
    ) as proc:
        assert proc.wait(30) == 0
        got = report(proc)
    assert got["error"] is None
    assert got["killed"] and got["returncode"] == -9 and got["leftover"] == 0


def test_a_program_that_cannot_start_is_reported() -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", SUPERVISOR],
        capture_output=True,
        input=json.dumps(
            {"argv": ["/nonexistent/build.sh"], "cwd": "/", "env": {}, "uid": None, "gid": None}
        ).encode()
        + b"\n",
        timeout=30,
        check=True,
    )
    got = json.loads(proc.stderr.splitlines()[-1])
    assert got["error"].startswith("FileNotFoundError")
    assert got["returncode"] is None


def test_fork_bomb_within_nproc_is_cleaned_up() -> None:
    # Many short-lived forks racing the killer: the loop converges (leftover 0 means
    # within the supervisor's own deadline).
    with supervised(
        "for i in $(seq 50); do (while :; do sleep 0.01 & wait; done) & done; echo PID $$; wait"
    ) as proc:
        read_pids(proc, 1)
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(30) == 0
        got = report(proc)
    assert got["leftover"] == 0
