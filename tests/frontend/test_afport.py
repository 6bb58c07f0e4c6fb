"""af's port file: `as` and `ah` reach af at the port it names, without the
portmapper; a stale, foreign or garbled file costs only the portmapper's round trip,
and the handshake still proves that af answered."""

from __future__ import annotations

import socket
from pathlib import Path

import trio

from applikant import envconfig
from applikant.frontend.afclient import Client
from applikant.node.node import open_node
from tests.node.support import COOKIE, echo, running_portmapper


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(tmp: Path, pm_port: int) -> str:
    (tmp / "cookie").write_bytes(COOKIE)
    path = tmp / f"applikant-{pm_port}.toml"
    path.write_text(
        f'[node]\nhost = "localhost"\ndata_dir = "{tmp}"\ncookie_file = "{tmp / "cookie"}"\n'
        f"dev_mode = true\n\n[dist]\nportmapper_port = {pm_port}\n"
    )
    return str(path)


def test_read_port_file(tmp_path: Path) -> None:
    path = tmp_path / "af.port"
    assert envconfig.read_port_file(str(path), "af@h") is None  # no file
    for content, wanted in (
        ("af@h 9123\n", 9123),
        ("af@h 9123", 9123),
        ("other@h 9123\n", None),  # another node's
        ("af@h\n", None),
        ("af@h 9123 x\n", None),
        ("af@h -1\n", None),
        ("af@h 0\n", None),
        ("af@h 70000\n", None),
        ("af@h ninety\n", None),
        ("\x00\xff garbage", None),
    ):
        path.write_text(content, encoding="latin-1")
        assert envconfig.read_port_file(str(path), "af@h") == wanted, content
    assert envconfig.af_port_file({"node": {"data_dir": "/d"}}) == "/d/af.port"


async def test_as_uses_the_port_file_and_falls_back_to_the_portmapper(tmp_path: Path) -> None:
    async with (
        running_portmapper() as s,
        open_node("af@localhost", COOKIE, s) as af,
        open_node("other@localhost", COOKIE, s) as other,
    ):
        af.register_local("svc", {"echo": echo})
        port_file = tmp_path / "af.port"
        with_pm = _config(tmp_path, s.portmapper_port)
        without_pm = _config(tmp_path, _dead_port())

        def call(config: str) -> object:
            client = Client(config)
            try:
                return client.call("svc", "echo", "hi", prefix="as", timeout=10)
            finally:
                client.close()

        # No file: the portmapper says where af is.
        assert await trio.to_thread.run_sync(call, with_pm) == "hi"
        # The file names af: no portmapper needed (this config's has nothing behind it).
        port_file.write_text(f"af@localhost {af.port}\n")
        assert await trio.to_thread.run_sync(call, without_pm) == "hi"
        # Stale files: nothing listens there, another node answers there (the
        # handshake refuses it), another node's file: the portmapper is asked.
        for stale in (
            f"af@localhost {_dead_port()}\n",
            f"af@localhost {other.port}\n",
            f"other@localhost {other.port}\n",
        ):
            port_file.write_text(stale)
            assert await trio.to_thread.run_sync(call, with_pm) == "hi", stale
