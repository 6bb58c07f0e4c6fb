"""The portmapper: registrations only from loopback and only with the cookie,
lookups for anyone, and connections that cannot starve it (caps, eviction of
the oldest unproven connection, an idle timeout). In one process, over real
sockets; the 10,000-connection flood against a real portmapper process is in
test_attacks.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import pytest
import trio

from applikant.node import pmclient, portmapper
from applikant.node.pmclient import registration_proof
from applikant.node.portmapper import Portmapper, _Client
from applikant.node.protocol import NEED_DATA, FrameDecoder, encode_frame
from harness.wait import wait_until_async

from .support import COOKIE


def _register(pm: Portmapper, client: _Client, name: str, port: int, cookie: bytes = COOKIE) -> Any:
    challenge = pm.answer({"op": "challenge"}, client)["challenge"]
    proof = registration_proof(cookie, challenge, name, port)
    return pm.answer({"op": "register", "name": name, "port": port, "proof": proof}, client)


def test_registrations_from_loopback_only() -> None:
    pm = Portmapper(COOKIE)
    answer = _register(pm, _Client("10.1.2.3"), "a", 9100)
    assert answer == {"ok": False, "error": "registrations are accepted from loopback only"}
    assert _register(pm, _Client("::1"), "a", 9100) == {"ok": True}
    assert pm.answer({"op": "lookup", "name": "a"}, _Client("10.1.2.3")) == {
        "ok": True,
        "port": 9100,
    }
    assert pm.answer({"op": "bogus"}, _Client("127.0.0.1"))["ok"] is False
    assert _register(pm, _Client("127.0.0.1"), "../x", 1)["ok"] is False


def test_a_registration_must_prove_the_cookie() -> None:
    pm = Portmapper(COOKIE)
    squat = {"op": "register", "name": "af", "port": 9100}
    client = _Client("127.0.0.1")
    refused = pm.answer(squat, client)  # the finding: `register squat -> ok`
    assert refused["ok"] is False and "cookie" in refused["error"]
    assert client.refused  # the portmapper hangs up on it
    assert _register(pm, _Client("127.0.0.1"), "af", 9100, cookie=b"a guess")["ok"] is False
    # a proof for another name or port, or a challenge used twice, proves nothing
    client = _Client("127.0.0.1")
    challenge = pm.answer({"op": "challenge"}, client)["challenge"]
    other = registration_proof(COOKIE, challenge, "am", 9100)
    assert pm.answer(dict(squat, proof=other), client)["ok"] is False
    client = _Client("127.0.0.1")
    challenge = pm.answer({"op": "challenge"}, client)["challenge"]
    good = dict(squat, proof=registration_proof(COOKIE, challenge, "af", 9100))
    assert pm.answer(good, client) == {"ok": True}
    pm.names.clear()
    assert pm.answer(good, client)["ok"] is False  # replayed on the same connection
    assert pm.names == {}
    assert _register(pm, _Client("127.0.0.1"), "af", 9100) == {"ok": True}
    assert pm.names == {"af": 9100}


def test_a_portmapper_needs_a_cookie() -> None:
    with pytest.raises(ValueError, match="cookie"):
        Portmapper(b"")


@asynccontextmanager
async def serving(**kw: Any) -> AsyncIterator[int]:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(portmapper.serve, cookie=COOKIE, **kw), "127.0.0.1", 0)
        yield port
        nursery.cancel_scope.cancel()


async def _connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def _request(stream: trio.abc.Stream, req: dict[str, Any]) -> Any:
    await stream.send_all(encode_frame(req))
    decoder = FrameDecoder(1 << 20)
    while (answer := decoder.next_frame()) is NEED_DATA:
        decoder.feed(await stream.receive_some(4096))
    return answer


async def _closed_by_peer(stream: trio.SocketStream) -> bool:
    try:
        return await stream.receive_some(1) == b""
    except trio.BrokenResourceError:
        return True


async def _lookup(port: int, name: str) -> int:
    return await trio.to_thread.run_sync(pmclient.lookup, "127.0.0.1", name, port)


async def test_a_silent_connection_is_closed_after_the_idle_timeout() -> None:
    async with serving(idle_timeout=0.2) as port:
        async with await _connect(port) as silent:
            with trio.fail_after(10):
                assert await _closed_by_peer(silent)
        async with await _connect(port) as talking:
            for _ in range(4):  # the timeout counts from the last request
                assert (await _request(talking, {"op": "names"}))["ok"]
                await trio.sleep(0.1)


async def _register_on(stream: trio.abc.Stream, name: str, port: int) -> Any:
    challenge = (await _request(stream, {"op": "challenge"}))["challenge"]
    proof = registration_proof(COOKIE, challenge, name, port)
    return await _request(stream, {"op": "register", "name": name, "port": port, "proof": proof})


async def test_a_registration_outlives_the_idle_timeout() -> None:
    async with serving(idle_timeout=0.1) as port:
        async with await _connect(port) as stream:
            assert await _register_on(stream, "a", 9100) == {"ok": True}
            await trio.sleep(0.5)
            assert await _lookup(port, "a") == 9100

        async def gone() -> bool:
            return await trio.to_thread.run_sync(pmclient.names, "127.0.0.1", port) == {}

        await wait_until_async(gone, what="the registration gone with its connection")


async def test_a_refused_registration_ends_its_connection() -> None:
    async with serving() as port:
        async with await _connect(port) as stream:
            answer = await _request(stream, {"op": "register", "name": "a", "port": 9100})
            assert answer["ok"] is False
            with trio.fail_after(10):
                assert await _closed_by_peer(stream)
        assert await trio.to_thread.run_sync(pmclient.names, "127.0.0.1", port) == {}


async def test_caps_close_the_oldest_silent_connection_and_lookups_go_on() -> None:
    async with serving(max_connections=6, max_per_address=4, idle_timeout=60) as port:
        # a registered node: proven, never closed to make room
        async with await _connect(port) as node:
            assert await _register_on(node, "a", 9100) == {"ok": True}
            silent = [await _connect(port) for _ in range(20)]
            try:
                for _ in range(5):
                    assert await _lookup(port, "a") == 9100
                with trio.fail_after(10):
                    assert await _closed_by_peer(silent[0])  # the oldest went first
                assert await _request(node, {"op": "names"}) == {"ok": True, "names": {"a": 9100}}
            finally:
                for s in silent:
                    await s.aclose()
