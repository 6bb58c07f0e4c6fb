"""The trio node runtime over real TCP on loopback, several nodes in one process."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio

from applikant.node import blocking, certs, pmclient, pmregister, portmapper
from applikant.node.errors import (
    NameTaken,
    NodeDown,
    NodeStartError,
    NoSuchName,
    Refused,
    RemoteError,
)
from applikant.node.node import CallContext, NameLost, NodeDownEvent, NodeUp, open_node
from applikant.node.settings import DistSettings, TlsSettings

from .support import COOKIE, echo, running_portmapper


async def test_nodeup_nodedown_events_and_sync() -> None:
    async with running_portmapper() as s:
        async with open_node("a@localhost", COOKIE, s) as a:
            events = a.monitor()
            async with open_node("b@localhost", COOKIE, s) as b:
                await b.register_global("svc", {"echo": echo})
                await b.connect("a@localhost")
                assert await events.receive() == NodeUp("b@localhost")
                await a.sync()
                assert a.global_names() == {"svc": "b@localhost"}
                assert await a.call("svc", "echo", [1, 2]) == [1, 2]
            down = await events.receive()
            assert isinstance(down, NodeDownEvent) and down.node == "b@localhost"
            assert a.global_names() == {}


async def test_short_and_long_names_never_mix() -> None:
    async with running_portmapper() as s:
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@127.0.0.1", COOKIE, s) as b,
        ):
            with pytest.raises(Refused, match="never mixed"):
                await a.connect("b@127.0.0.1")
            with pytest.raises(Refused, match="never mixed"):
                await b.connect("a@localhost")
            assert a.nodes() == [] and b.nodes() == []


async def test_simultaneous_dials_end_in_one_link() -> None:
    async with running_portmapper() as s:
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@localhost", COOKIE, s) as b,
        ):
            async with trio.open_nursery() as n:
                n.start_soon(a.connect, "b@localhost")
                n.start_soon(b.connect, "a@localhost")
            assert a.nodes() == ["b@localhost"] and b.nodes() == ["a@localhost"]
            assert await a.call("node", "ping", node="b@localhost") == "pong"


async def test_register_twice_and_name_taken() -> None:
    async with running_portmapper() as s:
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@localhost", COOKIE, s) as b,
        ):
            await a.register_global("x", {"echo": echo})
            await b.connect("a@localhost")
            await b.sync()
            with pytest.raises(NameTaken, match="a@localhost"):
                await b.register_global("x", {"echo": echo})
            await a.unregister_global("x")
            await b.sync()
            await b.register_global("x", {"echo": echo})
            await a.sync()
            assert a.global_names() == {"x": "b@localhost"}


async def test_healed_partition_tells_the_loser() -> None:
    lost: list[tuple[str, str]] = []
    async with running_portmapper() as s:
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@localhost", COOKIE, s) as b,
        ):
            events = b.monitor()
            await a.register_global("dup", {"echo": echo})
            await b.register_global("dup", {"echo": echo}, on_lost=lambda n, w: lost.append((n, w)))
            await b.connect("a@localhost")
            assert await events.receive() == NodeUp("a@localhost")
            assert await events.receive() == NameLost("dup", "a@localhost")
            assert lost == [("dup", "a@localhost")]
            await a.sync()
            await b.sync()
            assert a.global_names() == b.global_names() == {"dup": "a@localhost"}


async def test_a_lower_stamp_takes_a_held_name_over_and_the_holder_is_told() -> None:
    """What a standby am does with its lease's epoch: -2 beats the holder's -1."""
    async with running_portmapper() as s:
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@localhost", COOKIE, s) as b,
        ):
            events = a.monitor()
            await a.register_global("am_x", {"echo": echo}, stamp=-1.0)
            await b.connect("a@localhost")
            await b.sync()
            with pytest.raises(NameTaken):
                await b.register_global("am_x", {"echo": echo}, stamp=-1.0)
            with pytest.raises(NameTaken):
                await b.register_global("am_x", {"echo": echo})
            await b.register_global("am_x", {"echo": echo}, stamp=-2.0)
            assert b.global_names() == {"am_x": "b@localhost"}
            assert await events.receive() == NodeUp("b@localhost")
            assert await events.receive() == NameLost("am_x", "b@localhost")
            await a.sync()
            assert a.global_names() == {"am_x": "b@localhost"}
            assert await a.call("am_x", "echo", 7) == 7  # served by b now


async def test_handler_is_cancelled_when_its_caller_goes_down() -> None:
    started, cancelled = trio.Event(), trio.Event()

    async def wait_forever(ctx: CallContext, args: object) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.set()
            raise

    async with running_portmapper() as s:
        async with open_node("a@localhost", COOKIE, s) as a:
            await a.register_global("w", {"wait": wait_forever})

            def caller() -> None:
                eph = blocking.EphemeralNode("a@localhost", COOKIE, settings=s)
                try:
                    eph.call("w", "wait", timeout=0.5)
                except Exception:
                    pass
                eph.close()  # the caller's node goes away

            await trio.to_thread.run_sync(caller)
            with trio.fail_after(5):
                await started.wait()
                await cancelled.wait()


async def test_call_timeout_cancels_the_remote_handler() -> None:
    cancelled = trio.Event()

    async def slow(ctx: CallContext, args: object) -> None:
        try:
            await trio.sleep(30)
        finally:
            cancelled.set()

    async with running_portmapper() as s:
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@localhost", COOKIE, s) as b,
        ):
            await a.register_global("slow", {"slow": slow})
            await b.connect("a@localhost")
            await b.sync()
            from applikant.node.errors import CallTimeout

            with pytest.raises(CallTimeout):
                await b.call("slow", "slow", timeout=0.3)
            with trio.fail_after(5):
                await cancelled.wait()


async def test_portmapper_missing_or_name_taken_stops_a_start(tmp_path: Path) -> None:
    s = DistSettings(portmapper_port=1, portmapper_wait=0.3)
    with pytest.raises(NodeStartError, match="no portmapper"):
        async with open_node("a@localhost", COOKIE, s):
            pass
    async with running_portmapper() as s:
        async with open_node("a@localhost", COOKIE, s):
            with pytest.raises(NodeStartError, match="already registered"):
                async with open_node("a@localhost", COOKIE, s):
                    pass


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, TlsSettings]:
    certs.make_ca(tmp_path / "ca")
    cert, key = certs.make_cert(tmp_path / "ca", "localhost", tmp_path / "node")
    other_ca = tmp_path / "other"
    certs.make_ca(other_ca)
    bad_cert, bad_key = certs.make_cert(other_ca, "localhost", tmp_path / "bad")
    ca = str(tmp_path / "ca" / "ca.pem")
    return {
        "good": TlsSettings(enabled=True, ca=ca, cert=str(cert), key=str(key)),
        "foreign": TlsSettings(enabled=True, ca=ca, cert=str(bad_cert), key=str(bad_key)),
    }


async def test_tls_links_with_the_cluster_ca(pki: dict[str, TlsSettings]) -> None:
    async with running_portmapper() as plain:
        s = DistSettings(**{**plain.as_dict(), "tls": pki["good"].as_dict()})
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@localhost", COOKIE, s) as b,
        ):
            await a.register_global("svc", {"echo": echo})
            await b.connect("a@localhost")
            await b.sync()
            assert await b.call("svc", "echo", b"x" * 70000) == b"x" * 70000

            def ephemeral(tls: TlsSettings | None, cookie: bytes) -> object:
                es = DistSettings(**{**plain.as_dict(), "tls": (tls or TlsSettings()).as_dict()})
                return blocking.call("a@localhost", cookie, "svc", "echo", "hi", settings=es)

            assert await trio.to_thread.run_sync(ephemeral, pki["good"], COOKIE) == "hi"
            # the cookie check still runs inside TLS
            with pytest.raises(Refused, match="wrong cookie"):
                await trio.to_thread.run_sync(ephemeral, pki["good"], b"wrong")
            # a certificate from another CA, or none at all: refused
            with pytest.raises((Refused, NodeDown)):
                await trio.to_thread.run_sync(ephemeral, pki["foreign"], COOKIE)
            with pytest.raises((Refused, NodeDown)):
                await trio.to_thread.run_sync(ephemeral, None, COOKIE)
            assert await b.call("svc", "echo", 1) == 1


async def test_remote_error_kinds_survive_forwarding() -> None:
    async def deny(ctx: CallContext, args: object) -> None:
        from applikant.node.errors import Forbidden

        raise Forbidden("no write access to team/project")

    async with running_portmapper() as s:
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@localhost", COOKIE, s) as b,
        ):
            await b.register_global("svc", {"deny": deny})
            await a.connect("b@localhost")
            await a.sync()

            def via_a() -> object:
                return blocking.call("a@localhost", COOKIE, "svc", "deny", settings=s)

            with pytest.raises(RemoteError) as info:
                await trio.to_thread.run_sync(via_a)
            assert (info.value.kind, info.value.message) == (
                "forbidden",
                "no write access to team/project",
            )


async def test_a_lost_peer_is_dialled_again_but_not_one_that_said_goodbye() -> None:
    async with running_portmapper() as s:
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@localhost", COOKIE, s) as b,
        ):
            await b.register_global("svc", {"echo": echo})
            await a.connect("b@localhost")
            await a.sync()
            events = a.monitor()
            a.links["b@localhost"].close("simulated partition")  # no goodbye
            assert isinstance(await events.receive(), NodeDownEvent)
            with trio.fail_after(5):
                assert await events.receive() == NodeUp("b@localhost")
            await a.sync()
            assert a.global_names() == {"svc": "b@localhost"}
            async with open_node("c@localhost", COOKIE, s) as c:
                await c.connect("a@localhost")
                assert await events.receive() == NodeUp("c@localhost")
                await c.retire(0)  # a clean stop says goodbye
            assert await events.receive() == NodeDownEvent("c@localhost", "connection closed")
            await trio.sleep(1.0)
            assert "c@localhost" not in a.nodes()
            assert "c@localhost" not in a._connector.dialing


async def test_casts_arrive_in_order_without_a_reply() -> None:
    got: list[object] = []
    done = trio.Event()

    async def note(ctx: CallContext, args: object) -> None:
        got.append((ctx.caller, args))
        if len(got) == 50:
            done.set()

    async with running_portmapper() as s:
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@localhost", COOKIE, s) as b,
        ):
            b.register_local("inbox", {"note": note})
            for i in range(50):
                await a.cast("inbox", "note", i, node="b@localhost")
            with trio.fail_after(5):
                await done.wait()
            assert got == [("a@localhost", i) for i in range(50)]
            with pytest.raises(NoSuchName):
                await a.cast("nowhere", "note", 1)


async def test_portmapper_listens_on_several_addresses() -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(
            partial(portmapper.serve, cookie=COOKIE), ["127.0.0.1", "127.0.0.2"], 0
        )
        for host in ("127.0.0.1", "127.0.0.2"):
            listed = await trio.to_thread.run_sync(pmclient.names, host, port)
            assert listed == {}
        nursery.cancel_scope.cancel()


async def test_a_dialler_refuses_a_node_it_did_not_ask_for() -> None:
    """A name at the portmapper that leads to another node (the relay of the
    security review, or a stale entry): the trio driver refuses it, as the
    blocking one does (tests/node/test_attacks.py)."""
    async with running_portmapper() as s, open_node("a@localhost", COOKIE, s) as a:
        async with open_node("b@localhost", COOKIE, s) as b:
            pm = await trio.open_tcp_stream("127.0.0.1", s.portmapper_port)
            async with pm:
                challenge = (await pmregister.request(pm, {"op": "challenge"}))["challenge"]
                proof = pmclient.registration_proof(COOKIE, challenge, "c", a.port)
                req = {"op": "register", "name": "c", "port": a.port, "proof": proof}
                assert await pmregister.request(pm, req) == {"ok": True}
                with pytest.raises(Refused, match="a@localhost answered where c@localhost"):
                    await b.connect("c@localhost")
            assert b.nodes() == [] and a.nodes() == []


async def test_a_node_listener_is_capped_and_silent_connections_make_room() -> None:
    """Silent connections to a node (no handshake) beyond its cap per address push
    out the oldest of them; a real peer still links, and stays."""
    async with running_portmapper() as plain:
        s = DistSettings(**{**plain.as_dict(), "max_connections_per_address": 4})
        async with (
            open_node("a@localhost", COOKIE, s) as a,
            open_node("b@localhost", COOKIE, s) as b,
        ):
            silent = [await trio.open_tcp_stream("127.0.0.1", a.port) for _ in range(10)]
            try:
                await b.connect("a@localhost")
                assert await b.call("node", "ping", node="a@localhost") == "pong"
                with trio.fail_after(10):
                    assert await silent[0].receive_some(1) == b""  # pushed out
                for _ in range(10):  # more silence: the proven link stays
                    silent.append(await trio.open_tcp_stream("127.0.0.1", a.port))
                assert await b.call("node", "ping", node="a@localhost") == "pong"
                assert a.nodes() == ["b@localhost"]
            finally:
                for stream in silent:
                    await stream.aclose()
