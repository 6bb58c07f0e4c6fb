"""FastSSLStream: a correct trio Stream over TLS (trio's own generic stream checks,
with the checkpoint rule lifted as for FastSocketStream), that refuses a peer of
another CA, and hands the kernel its records without waiting when it can."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
import trio
import trio.testing

from applikant.node import certs
from applikant.node.faststream import FastSocketStream
from applikant.node.fasttls import FastSSLStream

from .test_faststream import fill, no_checkpoint_rule  # noqa: F401 (a fixture)


@pytest.fixture(scope="module")
def contexts(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    tmp = tmp_path_factory.mktemp("pki")
    certs.make_ca(tmp / "ca")
    cert, key = certs.make_cert(tmp / "ca", "localhost", tmp / "node")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(tmp / "ca" / "ca.pem"))
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(tmp / "ca" / "ca.pem"))
    client.load_cert_chain(cert, key)
    return client, server


def _pair(contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> tuple[FastSSLStream, FastSSLStream]:
    left, right = socket.socketpair()
    client, server = contexts
    return (
        FastSSLStream(FastSocketStream(left), client, server_hostname="localhost"),
        FastSSLStream(FastSocketStream(right), server, server_side=True),
    )


async def _shaken(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> tuple[FastSSLStream, FastSSLStream]:
    a, b = _pair(contexts)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.do_handshake)
        nursery.start_soon(b.do_handshake)
    return a, b


async def test_trio_generic_stream_checks(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    no_checkpoint_rule: None,  # noqa: F811
) -> None:
    async def clogged() -> tuple[FastSSLStream, FastSSLStream]:
        a, b = await _shaken(contexts)
        await fill(a)  # type: ignore[arg-type]
        await fill(b)  # type: ignore[arg-type]
        return a, b

    await trio.testing.check_two_way_stream(lambda: _shaken(contexts), clogged)


async def test_try_send_hands_records_to_the_kernel(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    a, b = await _shaken(contexts)
    assert a.try_send(b"hello") == 5 and a.backlog == b""
    assert await b.receive_some(100) == b"hello"
    big = b"x" * (4 << 20)  # more than the kernel takes at once: the rest waits
    assert a.try_send(big) == len(big) and a.backlog
    assert a.try_send(b"later") == 0  # nothing overtakes the backlog
    got = bytearray()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, b"later")
        while len(got) < len(big) + 5:
            got += await b.receive_some(1 << 20)
    assert bytes(got) == big + b"later" and a.backlog == b""
    await a.aclose()
    assert await b.receive_some(10) == b""
    await b.aclose()


async def test_records_that_came_together_are_read_together(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """OpenSSL reads one record at a time; a read returns the plaintext of all the
    records already received (up to max_bytes), as a plain socket would: the
    node's reader answers what one read brought with one write."""
    a, b = await _shaken(contexts)
    for word in (b"one ", b"two ", b"three"):  # three records, in the kernel together
        assert a.try_send(word) == len(word)
    await trio.testing.wait_all_tasks_blocked()
    assert await b.receive_some(100) == b"one two three"
    for word in (b"four ", b"five"):
        assert a.try_send(word) == len(word)
    assert await b.receive_some(7) == b"four fi"  # max_bytes still holds
    assert await b.receive_some(100) == b"ve"
    await a.aclose()
    await b.aclose()


async def test_receive_into_decrypts_into_the_callers_buffer(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """What the node's reader uses: the plaintext lands in its own buffer (the
    records one read brought together), the count says how much; what does not
    fit waits for the next read; end of file is 0."""
    a, b = await _shaken(contexts)
    for word in (b"one ", b"two ", b"three"):
        assert a.try_send(word) == len(word)
    await trio.testing.wait_all_tasks_blocked()
    buffer = bytearray(b"?" * 32)
    count = await b.receive_into(memoryview(buffer))
    assert (count, bytes(buffer[:count]), buffer[count:]) == (13, b"one two three", b"?" * 19)
    assert a.try_send(b"four five") == 9
    small = bytearray(4)
    assert await b.receive_into(memoryview(small)) == 4 and small == b"four"
    assert await b.receive_into(memoryview(buffer)) == 5 and buffer[:5] == b" five"
    with pytest.raises(ValueError):
        await b.receive_into(memoryview(bytearray()))
    await a.aclose()
    assert await b.receive_into(memoryview(buffer)) == 0
    await b.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await b.receive_into(memoryview(buffer))


async def test_after_close_notify_reads_say_end_of_file_at_once(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    """A peer that says close_notify but keeps its socket open: every read after
    it is end of file at once (receive_into reads the socket before asking
    OpenSSL only while no close_notify was seen)."""
    a, b = await _shaken(contexts)
    assert a.try_send(b"last words") == 10
    try:
        a._tls.unwrap()
    except ssl.SSLWantReadError:
        pass  # (the peer's close_notify is not awaited)
    a.transport.try_send(a._outgoing.read())
    await trio.testing.wait_all_tasks_blocked()
    buffer = memoryview(bytearray(64))
    with trio.fail_after(5):
        assert await b.receive_into(buffer) == 10 and buffer[:10] == b"last words"
        assert await b.receive_into(buffer) == 0
        assert await b.receive_into(buffer) == 0
        assert await b.receive_some(10) == b""
    await b.aclose()
    await a.transport.aclose()


async def test_a_peer_of_another_ca_is_refused(
    contexts: tuple[ssl.SSLContext, ssl.SSLContext], tmp_path: Path
) -> None:
    certs.make_ca(tmp_path / "other")
    cert, key = certs.make_cert(tmp_path / "other", "localhost", tmp_path / "rogue")
    rogue = ssl.create_default_context(cafile=str(tmp_path / "other" / "ca.pem"))
    rogue.load_cert_chain(cert, key)
    left, right = socket.socketpair()
    a = FastSSLStream(FastSocketStream(left), rogue, server_hostname="localhost")
    b = FastSSLStream(FastSocketStream(right), contexts[1], server_side=True)
    errors: list[BaseException] = []

    async def shake(stream: FastSSLStream) -> None:
        try:
            await stream.do_handshake()
        except trio.BrokenResourceError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(shake, a)
        nursery.start_soon(shake, b)
    assert len(errors) == 2
    assert any(isinstance(e.__cause__, ssl.SSLError) for e in errors)
    for stream in (a, b):
        await stream.aclose()
