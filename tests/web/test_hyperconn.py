"""hyperconn.Connection: a whole response leaves in one send, and nothing that
waits is held back: a streaming head, `100 Continue`, keep-alive, pipelining,
HEAD and the idle timer behave as in Hypercorn. A real Hypercorn trio server on
a loopback port and a raw socket client; waits are events, not timings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing
from hypercorn.trio import serve

from applikant.web import hyperconn
from applikant.web.daemon import hypercorn_config

BODY = b"<p>hello</p>" * 10
BIG = b"0123456789abcdef" * (hyperconn.JOIN_MAX // 16 + 1)


@dataclass
class Probe:
    """What the app saw, and what it waits for."""

    release: trio.Event = field(default_factory=trio.Event)
    bodies: list[bytes] = field(default_factory=list)


async def app(probe: Probe, scope: dict, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    if path == "/stream":  # the head now, the body once the test has seen the head
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await probe.release.wait()
        await send({"type": "http.response.body", "body": b"late", "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/upload":  # reads the body (the client waits for 100 Continue)
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        probe.bodies.append(body)
    if path == "/slow":  # busy for longer than the keep-alive timeout
        await probe.release.wait()
    body = BIG if path == "/big" else BODY
    headers = [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server(nursery: trio.Nursery) -> AsyncIterator[tuple[int, Probe]]:
    hyperconn.install()
    probe = Probe()
    config = hypercorn_config("127.0.0.1:0")
    config.keep_alive_timeout = 0.5
    binds = await nursery.start(
        partial(serve, partial(app, probe), config, shutdown_trigger=trio.sleep_forever)
    )
    yield int(binds[0].rsplit(":", 1)[1]), probe


class Client:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def until(self, marker: bytes) -> bytes:
        """Everything up to and including `marker`."""
        while marker not in self.buffer:
            data = await self.stream.receive_some(65536)
            assert data, f"closed before {marker!r}: {self.buffer!r}"
            self.buffer += data
        head, _, self.buffer = self.buffer.partition(marker)
        return head + marker

    async def exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            data = await self.stream.receive_some(65536)
            assert data, "closed early"
            self.buffer += data
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    async def response(self, body: bytes = BODY) -> tuple[bytes, bytes]:
        head = await self.until(b"\r\n\r\n")
        assert b"content-length: %d" % len(body) in head.lower(), head
        return head, await self.exactly(len(body))


@pytest.fixture
async def connect(server: tuple[int, Probe]) -> AsyncIterator[Any]:
    """Opens client connections to the server; closes them after the test."""
    clients: list[Client] = []

    async def open_one() -> Client:
        clients.append(Client(await trio.open_tcp_stream("127.0.0.1", server[0])))
        return clients[-1]

    yield open_one
    for client in clients:
        await client.stream.aclose()


def _get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nhost: t\r\n\r\n".encode()


async def test_a_whole_response_is_one_send(
    server: tuple[int, Probe], connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, _ = server
    sent: list[bytes] = []
    send_all = trio.SocketStream.send_all

    async def recording(self: trio.SocketStream, data: Any) -> None:
        if self.socket.getsockname()[1] == port:
            sent.append(bytes(data))
        await send_all(self, data)

    monkeypatch.setattr(trio.SocketStream, "send_all", recording)
    client = await connect()
    await client.stream.send_all(_get("/page"))
    head, body = await client.response()
    assert head.startswith(b"HTTP/1.1 200") and body == BODY
    assert sent == [head + body]
    sent.clear()
    await client.stream.send_all(_get("/big"))  # too big to copy: the body in a send of its own
    head, body = await client.response(BIG)
    assert body == BIG and sent == [head, BIG]


async def test_a_streaming_head_is_not_held_until_its_body(
    server: tuple[int, Probe], connect: Any
) -> None:
    _, probe = server
    client = await connect()
    await client.stream.send_all(_get("/stream"))
    head = await client.until(b"\r\n\r\n")  # the app sends its body only after this
    assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
    probe.release.set()
    assert await client.until(b"late\r\n") == b"4\r\nlate\r\n"
    assert await client.until(b"0\r\n\r\n") == b"0\r\n\r\n"


async def test_100_continue_is_sent_before_the_body_arrives(
    server: tuple[int, Probe], connect: Any
) -> None:
    _, probe = server
    client = await connect()
    await client.stream.send_all(
        b"POST /upload HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n"
    )
    assert (await client.until(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    await client.stream.send_all(b"hello")
    head, body = await client.response()
    assert head.startswith(b"HTTP/1.1 200") and body == BODY
    assert probe.bodies == [b"hello"]


async def test_keep_alive_pipelining_and_head(connect: Any) -> None:
    client = await connect()
    await client.stream.send_all(_get("/a") + _get("/b", "HEAD") + _get("/c"))
    first, body = await client.response()
    assert first.startswith(b"HTTP/1.1 200") and body == BODY
    head_only = await client.until(b"\r\n\r\n")
    assert head_only.startswith(b"HTTP/1.1 200")
    third, body = await client.response()  # a HEAD has no body: the next head follows
    assert third.startswith(b"HTTP/1.1 200") and body == BODY
    await client.stream.send_all(_get("/d"))  # and the connection is still open
    assert (await client.response())[1] == BODY


async def test_an_idle_connection_is_closed_and_a_busy_one_is_not(
    server: tuple[int, Probe],
    connect: Any,
) -> None:
    _, probe = server
    idle = await connect()
    await idle.stream.send_all(_get("/a"))
    await idle.response()
    assert await idle.stream.receive_some(100) == b""  # closed once idle for keep_alive_timeout
    busy = await connect()
    await busy.stream.send_all(_get("/slow"))
    await trio.sleep(1.5)  # three keep-alive timeouts with a request in progress
    probe.release.set()
    assert (await busy.response())[1] == BODY
    await busy.stream.send_all(_get("/a"))  # still open after its request
    assert (await busy.response())[1] == BODY
    assert await busy.stream.receive_some(100) == b""  # then idle, then closed


async def test_a_connection_its_client_closed_mid_request_ends(
    server: tuple[int, Probe], connect: Any
) -> None:
    """The keep-alive timer does not keep a connection whose reader has ended."""
    _, probe = server
    client = await connect()
    await client.stream.send_all(_get("/slow"))
    await client.stream.send_eof()
    await trio.sleep(0.5)  # lets the server read the end of the stream first
    probe.release.set()
    with trio.fail_after(30):  # closed at once
        while await client.stream.receive_some(65536):
            pass
    await trio.testing.wait_all_tasks_blocked(0.05)  # the server has done what it could:
    # a keep-alive timer that outlived the reader would keep the connection forever
    assert _connection_tasks() == 0


def _connection_tasks() -> int:
    """How many connections' tasks Hypercorn runs in this process."""
    count = 0
    nurseries = list(trio.lowlevel.current_root_task().child_nurseries)
    while nurseries:
        for task in nurseries.pop().child_tasks:
            count += task.name.endswith("_run_handler")
            nurseries.extend(task.child_nurseries)
    return count
