"""Nodes of one host link over Unix sockets (localsock.py): the same handshake and
authenticated frames as over TCP, TCP whenever the socket is not there."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
import trio

from applikant.node import localsock
from applikant.node.errors import Refused
from applikant.node.faststream import FastSocketStream
from applikant.node.link import Link
from applikant.node.node import Node, open_node
from applikant.node.settings import DistSettings

from .support import COOKIE, echo, running_portmapper


def local(settings: DistSettings, directory: Path) -> DistSettings:
    values = {**settings.as_dict(), "tls": settings.tls, "local_socket_dir": str(directory)}
    return DistSettings(**values)


def over_tcp(link: Link) -> bool:
    return link.address.startswith("localhost:")


async def test_nodes_of_one_host_link_through_their_sockets(tmp_path: Path) -> None:
    sockets = tmp_path / "nodes"
    async with running_portmapper() as pm:
        s = local(pm, sockets)
        async with open_node("a@localhost", COOKIE, s) as a:
            path = sockets / f"a.{a.port}.sock"
            assert stat.S_ISSOCK(path.stat().st_mode)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(sockets.stat().st_mode) == 0o700
            async with open_node("b@localhost", COOKIE, s) as b:
                await b.register_global("svc", {"echo": echo})
                link = await a.connect("b@localhost")
                assert link.address == f"unix:{sockets}/b.{b.port}.sock"
                assert b.links["a@localhost"].address == f"local:uid={os.getuid()}"
                await a.sync()
                big = os.urandom(300_000)
                assert await a.call("svc", "echo", [1, big]) == [1, big]
                assert link.proto.suite  # frames authenticated, as on TCP
            assert not (sockets / f"b.{b.port}.sock").exists()  # removed at stop
        assert not path.exists()


async def test_tcp_when_the_socket_is_not_there_or_not_configured(tmp_path: Path) -> None:
    async with running_portmapper() as pm:
        async with (
            open_node("a@localhost", COOKIE, local(pm, tmp_path / "a")) as a,
            open_node("b@localhost", COOKIE, local(pm, tmp_path / "b")) as b,
            open_node("c@localhost", COOKIE, pm) as c,  # (no local_socket_dir: TCP only)
        ):
            # a looks in its own directory, where b's socket is not
            assert over_tcp(await a.connect("b@localhost"))
            assert over_tcp(await c.connect("a@localhost"))
            assert await c.call("node", "ping", node="a@localhost") == "pong"
            assert b.links["a@localhost"].address.startswith("127.0.0.1:")  # (as accepted)


async def test_a_stale_socket_file_is_replaced_and_a_dead_one_falls_back(tmp_path: Path) -> None:
    sockets = tmp_path / "nodes"
    sockets.mkdir(mode=0o700)
    async with running_portmapper() as pm:
        s = local(pm, sockets)
        async with open_node("b@localhost", COOKIE, s) as b:
            path = sockets / f"b.{b.port}.sock"
        # b is gone; a file of its name and port stays behind, nobody listening
        leave_dead_socket(path)
        async with await localsock.listen(str(path)):  # replaced, with the node's mode
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            (await localsock.connect(str(path))).close()
        async with open_node("b@localhost", COOKIE, s) as b:
            async with open_node("a@localhost", COOKIE, s) as a:
                assert (await a.connect("b@localhost")).address.startswith("unix:")
        # a crashed node's socket at the path a dial looks at: the dial goes over TCP
        async with open_node("b@localhost", COOKIE, local(pm, tmp_path / "elsewhere")) as b:
            leave_dead_socket(sockets / f"b.{b.port}.sock")
            async with open_node("a@localhost", COOKIE, s) as a:
                assert over_tcp(await a.connect("b@localhost"))


def leave_dead_socket(path: Path) -> None:
    """A socket file nobody listens on (what a node killed with SIGKILL leaves)."""
    path.unlink(missing_ok=True)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()


async def test_without_the_cookie_the_socket_gives_nothing(tmp_path: Path) -> None:
    sockets = tmp_path / "nodes"
    async with running_portmapper() as pm:
        s = local(pm, sockets)
        async with open_node("a@localhost", COOKIE, s) as a:
            path = str(sockets / f"a.{a.port}.sock")

            async def through_the_socket(peer: str) -> tuple[trio.abc.Stream, str]:
                return FastSocketStream(await localsock.connect(path)), f"unix:{path}"

            x = Node("x@localhost", b"not-the-cookie", s, opener=through_the_socket)
            async with trio.open_nursery() as nursery:
                await nursery.start(x.run)
                with pytest.raises(Refused, match="wrong cookie"):
                    await x.connect("a@localhost")
                nursery.cancel_scope.cancel()
            assert a.nodes() == []

            # bytes that are no handshake: the connection is closed, nothing served
            def garbage() -> bytes:
                with socket.socket(socket.AF_UNIX) as raw:
                    raw.connect(path)
                    raw.sendall(b"\x00\x00\x00\x05hello")
                    raw.settimeout(10)
                    got = b""
                    while chunk := raw.recv(4096):
                        got += chunk
                    return got

            assert await trio.to_thread.run_sync(garbage) == b""
            assert a.nodes() == []


async def test_a_path_too_long_or_a_directory_not_ours_keeps_tcp(tmp_path: Path) -> None:
    assert localsock.socket_path("/x" * 60, "a", 9100) is None
    assert localsock.socket_path("/run/app", "a", 9100) == "/run/app/a.9100.sock"
    async with running_portmapper() as pm:
        long = tmp_path / ("d" * 120)
        async with open_node("a@localhost", COOKIE, local(pm, long)):
            assert not long.exists() or not any(long.iterdir())
            blocked = tmp_path / "file"
            blocked.write_text("not a directory")
            async with open_node("b@localhost", COOKIE, local(pm, blocked / "nodes")) as b:
                assert over_tcp(await b.connect("a@localhost"))
                assert await b.call("node", "ping", node="a@localhost") == "pong"


async def test_tls_keeps_links_on_tcp(tmp_path: Path) -> None:
    from applikant.node import certs
    from applikant.node.settings import TlsSettings

    certs.make_ca(str(tmp_path / "ca"))
    certs.make_cert(str(tmp_path / "ca"), "localhost", str(tmp_path))
    tls = TlsSettings(
        enabled=True,
        ca=str(tmp_path / "ca" / "ca.pem"),
        cert=str(tmp_path / "localhost.pem"),
        key=str(tmp_path / "localhost.key"),
    )
    sockets = tmp_path / "nodes"
    async with running_portmapper() as pm:
        values = {**pm.as_dict(), "tls": tls, "local_socket_dir": str(sockets)}
        s = DistSettings(**values)
        async with open_node("a@localhost", COOKIE, s) as a, open_node("b@localhost", COOKIE, s):
            assert over_tcp(await a.connect("b@localhost"))
            assert not sockets.exists() or not any(sockets.iterdir())


async def test_connect_to_nothing_is_an_oserror(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        await localsock.connect(str(tmp_path / "none.sock"))
    with trio.fail_after(5):
        listener = await localsock.listen(str(tmp_path / "d" / "x.sock"))
        async with listener:
            sock = await localsock.connect(str(tmp_path / "d" / "x.sock"))
            sock.close()
