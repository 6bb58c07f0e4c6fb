"""lean.py both ways: with the private stdlib modules `as` and `ah` use for a fast
start, and without them (a Python that lacks or moved them), where the public
modules take over and an ephemeral call still works."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from applikant.node import lean
from applikant.node.node import open_node

from .support import COOKIE, echo, running_portmapper

# Run in a fresh interpreter: optionally block the private modules (a meta path
# finder that refuses them; the public modules imported first keep their own
# references, as they would in a Python that has them under other names), make
# one ephemeral call and say what was used and what got imported.
PROBE = """
import importlib.abc, json, sys
BLOCKED = ("_sha256", "_sha2", "_operator", "_socket")
if {blocked!r}:
    import socket, operator
    for name in BLOCKED:
        sys.modules.pop(name, None)

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, Refuse())
from applikant.node import blocking, lean
from applikant.node.settings import DistSettings
answer = blocking.call("a@localhost", {cookie!r}, "svc", "echo", "hi",
                       settings=DistSettings(portmapper_port={port}), timeout=10)
print(json.dumps({{
    "answer": answer,
    "sha256": lean.sha256.__module__,
    "compare_digest": getattr(lean.compare_digest, "__module__", "?"),
    "sockets": lean.sockets.__name__,
    "imported": sorted(m for m in ("hashlib", "hmac", "socket") if m in sys.modules),
}}))
"""


@pytest.mark.parametrize("blocked", [False, True], ids=["private", "fallback"])
async def test_an_ephemeral_call_works_with_and_without_the_private_modules(
    blocked: bool,
) -> None:
    async with running_portmapper() as s, open_node("a@localhost", COOKIE, s) as a:
        await a.register_global("svc", {"echo": echo})
        code = PROBE.format(blocked=blocked, cookie=COOKIE, port=s.portmapper_port)
        done = await trio.run_process(
            [sys.executable, "-c", code], capture_stdout=True, capture_stderr=True, check=False
        )
    assert done.returncode == 0, done.stderr.decode()
    seen = json.loads(done.stdout)
    assert seen["answer"] == "hi"
    if blocked:
        assert seen["sockets"] == "socket"
        assert seen["sha256"] not in ("_sha256", "_sha2")
        assert seen["compare_digest"] != "_operator"
        assert {"hashlib", "hmac", "socket"} <= set(seen["imported"])
    else:
        assert seen["sockets"] == "_socket"
        assert seen["sha256"] in ("_sha256", "_sha2")
        assert seen["compare_digest"] == "_operator"
        assert seen["imported"] == []  # the point of it all: none of the heavy ones


def test_both_ways_give_the_same_answers() -> None:
    """The private functions are the ones the public modules re-export or wrap."""
    for data in (b"", b"abc", bytes(range(256)) * 9):
        assert lean.sha256(data).digest() == hashlib.sha256(data).digest()
    for a, b in ((b"x", b"x"), (b"x", b"y"), (b"", b""), (b"long" * 9, b"long" * 9)):
        assert lean.compare_digest(a, b) == hmac.compare_digest(a, b) == (a == b)
    for attr in ("getaddrinfo", "socket", "gethostname", "SOCK_STREAM", "IPPROTO_TCP"):
        assert hasattr(lean.sockets, attr) and hasattr(socket, attr)
    assert lean.sockets.gethostname() == socket.gethostname()


def test_addresses_skip_the_resolver_for_ips_and_localhost() -> None:
    from applikant.node import lean

    assert list(lean._addresses("127.0.0.1", 5)) == [(lean.sockets.AF_INET, ("127.0.0.1", 5))]
    assert list(lean._addresses("::1", 5)) == [(lean.sockets.AF_INET6, ("::1", 5))]
    first_two = list(lean._addresses("localhost", 5))[:2]
    assert first_two == [
        (lean.sockets.AF_INET, ("127.0.0.1", 5)),
        (lean.sockets.AF_INET6, ("::1", 5)),
    ]


def _child(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env
    )


def test_execvpe_walks_path_as_os_execvpe_does(tmp_path: Path) -> None:
    """Missing and non-directory entries are skipped; the first runnable program wins."""
    (tmp_path / "file").write_text("")
    path = f"{tmp_path / 'missing'}:{tmp_path / 'file'}:/bin:/usr/bin"
    code = (
        "from applikant.node import lean;"
        f" lean.execvpe('echo', ['echo', 'ran'], {{'PATH': {path!r}, 'X': 'y'}})"
    )
    done = _child(code)
    assert (done.returncode, done.stdout) == (0, "ran\n"), done.stderr


def test_execvpe_raises_like_os_execvpe(tmp_path: Path) -> None:
    """Nothing found: FileNotFoundError; found but not runnable: that error, even
    when a later entry lacks the program."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "prog").write_text("#!/bin/sh\n")  # not executable
    for path, wanted in (
        (f"{tmp_path}:/nonexistent", "FileNotFoundError"),
        (
            f"{tmp_path / 'missing'}:{blocked}:{tmp_path}",
            "PermissionError",
        ),
    ):
        code = (
            "from applikant.node import lean\n"
            "try:\n"
            f"    lean.execvpe('prog', ['prog'], {{'PATH': {path!r}}})\n"
            "except OSError as exc:\n"
            "    print(type(exc).__name__)\n"
        )
        done = _child(code)
        assert done.stdout.strip() == wanted, (path, done.stderr)


def test_restore_sigpipe_gives_the_default_back() -> None:
    code = (
        "import signal; from applikant.node import lean;"
        " assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN; lean.restore_sigpipe();"
        " print(signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL)"
    )
    done = _child(code)
    assert done.stdout.strip() == "True", done.stderr
