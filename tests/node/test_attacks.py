"""The security review's findings on the node layer, each played for real and refused.

Real processes on loopback: a portmapper, a node standing in for am (the echo
node under am's name, serving `am_user_db`), an ephemeral blocking client as
`as` runs it, and the attacker's tools: a TCP relay that forwards the handshake
and then injects, replays, reorders or drops frames; a registration without the
cookie from uid `nobody`; ten thousand silent connections to the portmapper.
Before the node layer authenticated its frames and its registrations, the relay
got `am_user_db.list_users` answered, the squat was registered and the flood
starved the portmapper (issue 13).
"""

from __future__ import annotations

import os
import pwd
import resource
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from applikant import procs
from applikant.node import pmclient
from applikant.node.blocking import EphemeralNode
from applikant.node.errors import NodeDown, Refused
from applikant.node.frameauth import TAG_BYTES
from applikant.node.pmclient import registration_proof
from applikant.node.protocol import NEED_DATA, FrameDecoder, encode_frame
from applikant.node.settings import DistSettings
from harness.cluster import Cluster
from harness.wait import TIMEOUT, wait_until

pytestmark = pytest.mark.slow

INJECTED = [1, 4242, None, "am_user_db", "list_users", {"actor": "system"}]


# ---- tools ------------------------------------------------------------------------


def _request(sock: socket.socket, req: dict[str, Any]) -> Any:
    sock.sendall(encode_frame(req))
    decoder = FrameDecoder(1 << 20)
    while (answer := decoder.next_frame()) is NEED_DATA:
        decoder.feed(sock.recv(65536))
    return answer


def register(pm_port: int, name: str, port: int, cookie: bytes) -> socket.socket:
    """Register `name` -> `port` as a node does (with the cookie's proof); the
    registration lasts as long as the returned socket."""
    sock = socket.create_connection(("127.0.0.1", pm_port))
    challenge = _request(sock, {"op": "challenge"})["challenge"]
    proof = registration_proof(cookie, challenge, name, port)
    answer = _request(sock, {"op": "register", "name": name, "port": port, "proof": proof})
    assert answer == {"ok": True}, answer
    return sock


def _split(buf: bytearray, tagged: bool) -> Iterator[bytes]:
    """Whole frames off the front of `buf` (with their tags once the handshake is done)."""
    extra = TAG_BYTES if tagged else 0
    while len(buf) >= 4:
        size = 4 + struct.unpack(">I", buf[:4])[0] + extra
        if len(buf) < size:
            return
        frame = bytes(buf[:size])
        del buf[:size]
        yield frame


class Relay:
    """A man in the middle on loopback: forwards the handshake (two frames each way)
    untouched, then plays `attack` on the client's frames. Records the node's
    frames after the handshake, and when the node hangs up."""

    def __init__(self, node_port: int, attack: str) -> None:
        self.node_port = node_port
        self.attack = attack
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.from_node: list[Any] = []
        self.node_closed = threading.Event()
        self.address = ""  # the relay's end towards the node, as the node sees it
        self._sockets: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._run, daemon=True)]
        self._threads[0].start()

    def _run(self) -> None:
        client, _ = self.listener.accept()
        node = socket.create_connection(("127.0.0.1", self.node_port))
        self._sockets = [client, node]
        host, port = node.getsockname()[:2]
        self.address = f"{host}:{port}"
        back = threading.Thread(target=self._node_to_client, args=(node, client), daemon=True)
        back.start()
        self._threads.append(back)
        try:
            self._client_to_node(client, node)
        except OSError:
            pass

    def _client_to_node(self, client: socket.socket, node: socket.socket) -> None:
        buf, count, held = bytearray(), 0, b""
        while data := client.recv(65536):
            buf += data
            for frame in _split(buf, tagged=count >= 2):
                count += 1
                after = count - 3  # the client's frames after the handshake, from 0
                if count <= 2:
                    node.sendall(frame)
                    if count == 2 and self.attack == "inject":
                        node.sendall(encode_frame(INJECTED) + os.urandom(TAG_BYTES))
                elif after == 0 and self.attack == "replay":
                    node.sendall(frame + frame)
                elif after == 0 and self.attack in ("reorder", "drop"):
                    held = frame if self.attack == "reorder" else b""
                elif after == 1 and held:
                    node.sendall(frame + held)
                else:
                    node.sendall(frame)

    def _node_to_client(self, node: socket.socket, client: socket.socket) -> None:
        buf, count = bytearray(), 0
        try:
            while data := node.recv(65536):
                client.sendall(data)
                buf += data
                for frame in _split(buf, tagged=count >= 2):
                    count += 1
                    if count > 2:
                        self.from_node.append(msgpack.unpackb(frame[4:-TAG_BYTES]))
        except OSError:
            pass
        self.node_closed.set()
        for sock in (client, node):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(10)
        for sock in [self.listener, *self._sockets]:
            sock.close()


@pytest.fixture
def am(cluster: Cluster) -> procs.Proc:
    """The portmapper and a node named am serving `am_user_db`."""
    cluster.start_portmapper()
    return cluster.start_node("am", "am_user_db")


@pytest.fixture
def second_portmapper(cluster: Cluster) -> Iterator[int]:
    """Another portmapper with the cluster's cookie: where the attacker's names are
    (a client that looks a node up there reaches whatever is registered)."""
    port = procs.free_port()
    with procs.Proc(
        procs.python_module("applikant.cli.main", "portmapper", "--port", str(port)),
        env=cluster.env,
        log_path=str(cluster.tmp / "portmapper-2.log"),
    ) as pm:
        procs.wait_port("127.0.0.1", port, proc=pm.popen)
        yield port


# ---- frames on a link ---------------------------------------------------------------


@pytest.mark.parametrize("attack", ["inject", "replay", "reorder", "drop"])
def test_a_relay_cannot_speak_on_a_link(
    cluster: Cluster, am: procs.Proc, second_portmapper: int, attack: str
) -> None:
    """The relay sits between `as`'s ephemeral node and am. Injected, replayed,
    reordered or dropped, the first frame that is not the client's next one ends
    the link; the injected call is never answered; am logs the relay's address."""
    relay = Relay(am.port, attack)  # type: ignore[attr-defined]
    held = register(second_portmapper, "am", relay.port, cluster.cookie.encode())
    # ticks every 0.1 s while the client waits: the next frames to reorder or drop
    settings = DistSettings(portmapper_port=second_portmapper, tick_time=0.4)
    try:
        with EphemeralNode(
            "am@localhost", cluster.cookie.encode(), prefix="as", settings=settings
        ) as eph:
            try:
                answer = eph.call("am_user_db", "echo", "hello", timeout=20)
            except NodeDown:
                answer = None
        assert relay.node_closed.wait(20), "am kept the link"
    finally:
        held.close()
        relay.close()
    assert not [f for f in relay.from_node if f[:2] in ([2, 4242], [3, 4242])]
    if attack == "replay":  # the client's own call came first; am served it at most once
        assert answer in ("hello", None)
        assert [f for f in relay.from_node if f[0] in (2, 3)] in ([], [[2, 1, "hello"]])
    else:
        assert answer is None and relay.from_node == []
    log = wait_until(lambda: "event=protocol_error" in am.log_text() and am.log_text())
    [line] = [ln for ln in log.splitlines() if "event=protocol_error" in ln]
    assert f"address={relay.address}" in line and "authentication" in line


def test_the_blocking_client_refuses_a_node_it_did_not_ask_for(
    cluster: Cluster, am: procs.Proc, second_portmapper: int
) -> None:
    """It asked for af@localhost; am@localhost answered (a name pointing at am):
    refused before the client proves anything."""
    held = register(second_portmapper, "af", am.port, cluster.cookie.encode())  # type: ignore[attr-defined]
    settings = DistSettings(portmapper_port=second_portmapper)
    try:
        with pytest.raises(Refused, match="am@localhost answered where af@localhost was asked"):
            EphemeralNode("af@localhost", cluster.cookie.encode(), prefix="as", settings=settings)
    finally:
        held.close()
    log = wait_until(lambda: "handshake_refused" in am.log_text() and am.log_text())
    assert "answered where af@localhost was asked for" in log


# ---- the portmapper ---------------------------------------------------------------------


def _as_user(user: str, fn: Any) -> Any:
    """Run `fn()` in a forked child with `user`'s uid and gid; its result (or the
    words of its exception) back through a pipe."""
    entry = pwd.getpwnam(user)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.setgroups([])
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)
            out = msgpack.packb(["ok", fn()])
        except BaseException as exc:
            out = msgpack.packb(["error", f"{type(exc).__name__}: {exc}"])
        os.write(write, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return msgpack.unpackb(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become the user nobody")
def test_a_local_user_cannot_squat_a_name(cluster: Cluster) -> None:
    cluster.start_portmapper()
    pm_port = cluster.pm_port
    cookie_file = str(cluster.tmp / "cookie")

    def squat() -> Any:
        read_cookie = "read"
        try:
            open(cookie_file).close()
        except OSError as exc:
            read_cookie = exc.strerror or "refused"
        with socket.create_connection(("127.0.0.1", pm_port)) as sock:
            plain = _request(sock, {"op": "register", "name": "squat", "port": 9100})
        with socket.create_connection(("127.0.0.1", pm_port)) as sock:
            challenge = _request(sock, {"op": "challenge"})["challenge"]
            proof = registration_proof(b"a guessed cookie", challenge, "squat", 9100)
            guessed = _request(
                sock, {"op": "register", "name": "squat", "port": 9100, "proof": proof}
            )
        return [os.getuid(), read_cookie, plain, guessed]

    status, result = _as_user("nobody", squat)
    assert status == "ok", result
    uid, read_cookie, plain, guessed = result
    assert uid == pwd.getpwnam("nobody").pw_uid and read_cookie == "Permission denied"
    for answer in (plain, guessed):
        assert answer["ok"] is False and "cookie" in answer["error"]
    assert pmclient.names("127.0.0.1", pm_port) == {}
    assert cluster.portmapper is not None
    assert cluster.portmapper.log_text().count("event=register_refused") == 2


def test_ten_thousand_silent_connections_do_not_starve_the_portmapper(cluster: Cluster) -> None:
    """The portmapper under systemd's default descriptor limit (1,024); a local user
    opens 10,000 connections and says nothing. Lookups still answer, the nodes'
    registrations stay, and the log has no tracebacks."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 10_500:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < 10,500")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    argv = procs.python_module("applikant.cli.main", "portmapper", "--port", str(cluster.pm_port))
    pm = procs.Proc(
        ["prlimit", "--nofile=1024:1024", *argv],
        env=cluster.env,
        log_path=str(cluster.tmp / "portmapper.log"),
    )
    cluster.procs.append(pm)
    silent: list[socket.socket] = []

    def lookup() -> int:
        # Answered, not fast: during the burst the kernel queues a lookup behind the
        # connections made before it, which a loaded machine takes seconds to pass.
        return pmclient.lookup("127.0.0.1", "a", cluster.pm_port, timeout=TIMEOUT)

    try:
        procs.wait_port("127.0.0.1", cluster.pm_port, proc=pm.popen)
        node = cluster.start_node("a")
        for i in range(10_000):
            sock = socket.socket()
            sock.setblocking(False)
            try:
                sock.connect(("127.0.0.1", cluster.pm_port))
            except BlockingIOError:
                pass
            silent.append(sock)
            if i % 1000 == 999:
                assert lookup() == node.port  # type: ignore[attr-defined]
        for _ in range(50):
            assert lookup() == node.port  # type: ignore[attr-defined]
        assert pmclient.names("127.0.0.1", cluster.pm_port) == {"a": node.port}  # type: ignore[attr-defined]
        assert pm.alive()
    finally:
        for sock in silent:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    log = pm.log_text()
    assert "traceback" not in log and "client_dropped" not in log
    assert log.count("\n") < 50, log[-3000:]
    # and a node still links through it
    out = subprocess.run(
        [sys.executable, "-m", "applikant.cli.main", "ping", "a@localhost"],
        env={**os.environ, **cluster.env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
