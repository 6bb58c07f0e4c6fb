"""The sans-IO protocol core, tested in the manner of h11.

A pair helper runs a client and a server Connection against each other with the
bytes shuttled in memory; every input is fed whole, one byte at a time and with
the next frame glued on, and must give the same events each way.
"""

from __future__ import annotations

import hmac
import itertools
import math
import os
import struct
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from applikant.node import frameauth, protocol
from applikant.node.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from applikant.node.frameauth import AES_GCM, HMAC_SHA256, TAG_BYTES, hmac_sha256
from applikant.node.protocol import (
    CHALLENGE_BYTES,
    HANDSHAKE_MAX_FRAME,
    K_CALL,
    K_CANCEL,
    K_CAST,
    K_ERROR,
    K_PEERS,
    K_REGISTRY,
    K_REPLY,
    K_TICK,
    LARGE_BODY,
    NEED_DATA,
    REFUSE_COOKIE,
    REFUSE_MIXED_NAMES,
    REFUSE_NAME_IN_USE,
    REFUSE_NO_SUITE,
    REFUSE_VERSION,
    REFUSE_WRONG_NODE,
    VERSION,
    Call,
    Cancel,
    Cast,
    Connection,
    ConnectionClosed,
    ErrorReply,
    FrameDecoder,
    Goodbye,
    HandshakeDone,
    HandshakeFailed,
    NameClaimed,
    NameReleased,
    NamesHeld,
    PeerHello,
    PeerLinked,
    Peers,
    Reply,
    Role,
    State,
    SyncAck,
    SyncRequest,
    Tick,
    encode_frame,
)

COOKIE = b"cookie:" + bytes(range(256)) * 2  # long and binary: a scan for it cannot miss
OTHER_COOKIE = b"a different cookie"
CLIENT = "c@host"
SERVER = "s@host"

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- feeding ------------------------------------------------------------------


def chunks_whole(data: bytes) -> list[bytes]:
    return [data] if data else []


def chunks_bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


FEEDERS = {"whole": chunks_whole, "bytewise": chunks_bytewise}


def drain(conn: Connection, on_event: Callable[[Connection, Any], Any] | None = None) -> list[Any]:
    """Pull events until NEED_DATA or until the connection has ended."""
    events = []
    for _ in range(10_000):
        event = conn.next_event()
        if event is NEED_DATA:
            return events
        if on_event is not None:
            replaced = on_event(conn, event)
            if replaced is not None:
                event = replaced
        events.append(event)
        if conn.state in (State.CLOSED, State.ERROR):
            return events
    raise AssertionError("next_event never returned NEED_DATA")


def feed(
    conn: Connection,
    data: bytes,
    chunker: Callable[[bytes], list[bytes]] = chunks_whole,
    on_event: Callable[[Connection, Any], Any] | None = None,
) -> list[Any]:
    events: list[Any] = []
    for chunk in chunker(data):
        conn.receive_data(chunk)
        events += drain(conn, on_event)
    return events


def accept_all(conn: Connection, event: Any) -> Any:
    if type(event) is PeerHello:
        conn.accept()
    return None


def frames(data: bytes) -> list[Any]:
    """Split captured wire bytes into decoded frames."""
    out = []
    dec = FrameDecoder(1 << 30)
    dec.feed(data)
    while (obj := dec.next_frame()) is not NEED_DATA:
        out.append(obj)
    return out


class Pair:
    """A client and a server Connection wired back to back, with every byte recorded.

    `tamper_c2s` / `tamper_s2c` may rewrite the bytes in flight (to play a man in
    the middle or replay an old message).
    """

    def __init__(
        self,
        client: str = CLIENT,
        server: str = SERVER,
        *,
        client_cookie: bytes = COOKIE,
        server_cookie: bytes = COOKIE,
        hidden: bool = False,
        max_frame: int = protocol.DEFAULT_MAX_FRAME,
        client_macs: tuple[str, ...] = frameauth.SUITES,
        server_macs: tuple[str, ...] = frameauth.SUITES,
        expect: str | None = None,
        chunker: Callable[[bytes], list[bytes]] = chunks_whole,
        decide: Callable[[Connection, Any], Any] = accept_all,
        tamper_c2s: Callable[[bytes], bytes] | None = None,
        tamper_s2c: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.client = Connection(
            Role.CLIENT,
            client,
            client_cookie,
            hidden=hidden,
            max_frame=max_frame,
            macs=client_macs,
            peer=expect,
        )
        self.server = Connection(
            Role.SERVER, server, server_cookie, max_frame=max_frame, macs=server_macs
        )
        self.chunker = chunker
        self.decide = decide
        self.tamper_c2s = tamper_c2s
        self.tamper_s2c = tamper_s2c
        self.c2s = bytearray()  # every byte the client sent
        self.s2c = bytearray()
        self.client_events: list[Any] = []
        self.server_events: list[Any] = []

    def _to_server(self, data: bytes) -> None:
        if self.tamper_c2s is not None and data:
            data = self.tamper_c2s(data)
        self.c2s += data
        self.server_events += feed(self.server, data, self.chunker, self.decide)

    def _to_client(self, data: bytes) -> None:
        if self.tamper_s2c is not None and data:
            data = self.tamper_s2c(data)
        self.s2c += data
        self.client_events += feed(self.client, data, self.chunker)

    def handshake(self) -> Pair:
        self.client.initiate()
        return self.handshake_rest()

    def handshake_rest(self) -> Pair:
        """Shuttle what both sides have to say until neither has more."""
        for _ in range(10):
            out_c = self.client.data_to_send()
            if out_c:
                self._to_server(out_c)
            out_s = self.server.data_to_send()
            if out_s:
                self._to_client(out_s)
            if not out_c and not out_s:
                break
        return self

    def c_to_s(
        self, event: Any, chunker: Callable[[bytes], list[bytes]] = chunks_whole
    ) -> list[Any]:
        data = self.client.send(event)
        self.c2s += data
        return feed(self.server, data, chunker)

    def s_to_c(
        self, event: Any, chunker: Callable[[bytes], list[bytes]] = chunks_whole
    ) -> list[Any]:
        data = self.server.send(event)
        self.s2c += data
        return feed(self.client, data, chunker)


def connected(**kwargs: Any) -> Pair:
    pair = Pair(**kwargs).handshake()
    assert pair.client.state == State.CONNECTED
    assert pair.server.state == State.CONNECTED
    return pair


# ---- the handshake -----------------------------------------------------------


@pytest.mark.parametrize("mode", FEEDERS)
@pytest.mark.parametrize("hidden", [False, True])
def test_handshake_same_events_whole_and_bytewise(mode: str, hidden: bool) -> None:
    pair = Pair(chunker=FEEDERS[mode], hidden=hidden).handshake()
    assert pair.server_events == [PeerHello(CLIENT, hidden), HandshakeDone(CLIENT, hidden)]
    assert pair.client_events == [HandshakeDone(SERVER, False)]
    assert pair.client.peer == SERVER and pair.server.peer == CLIENT
    assert pair.server.peer_hidden is hidden
    assert pair.client.state == pair.server.state == State.CONNECTED
    # The handshake is four frames: hello, proof / challenge, welcome.
    assert [f["t"] for f in frames(pair.c2s)] == ["hello", "proof"]
    assert [f["t"] for f in frames(pair.s2c)] == ["challenge", "welcome"]


def test_handshake_welcome_with_first_message_glued_on() -> None:
    """A frame larger than the handshake limit right behind the welcome is taken:
    the limit is raised before the next frame is read."""
    big = Reply(7, b"x" * (4 * HANDSHAKE_MAX_FRAME))
    pair = Pair()
    pair.client.initiate()
    feed(pair.server, pair.client.data_to_send(), on_event=accept_all)
    feed(pair.client, pair.server.data_to_send())
    events = feed(pair.server, pair.client.data_to_send(), on_event=accept_all)
    assert events == [HandshakeDone(CLIENT, False)]
    welcome = pair.server.data_to_send()
    glued = welcome + pair.server.send(big) + pair.server.send(Tick())
    assert feed(pair.client, glued) == [HandshakeDone(SERVER, False), big, Tick()]


def test_handshake_welcome_with_trailing_data_bytewise() -> None:
    pair = Pair()
    pair.client.initiate()
    feed(pair.server, pair.client.data_to_send(), on_event=accept_all)
    feed(pair.client, pair.server.data_to_send())
    feed(pair.server, pair.client.data_to_send(), on_event=accept_all)
    msg = Cast(None, "svc", "m", {"k": [1, 2]})
    glued = pair.server.data_to_send() + pair.server.send(msg)
    assert feed(pair.client, glued, chunks_bytewise) == [HandshakeDone(SERVER, False), msg]


def test_hello_with_trailing_data_gives_peer_hello_first() -> None:
    """Bytes glued after the hello wait until the server has decided."""
    client = Connection(Role.CLIENT, CLIENT, COOKIE)
    server = Connection(Role.SERVER, SERVER, COOKIE)
    client.initiate()
    server.receive_data(client.data_to_send() + b"\x00\x00")
    assert server.next_event() == PeerHello(CLIENT, False)
    assert server.next_event() is NEED_DATA  # a partial frame: wait for the rest


def test_cookie_never_crosses_the_wire() -> None:
    pair = connected()
    for msg in sample_messages():
        pair.c_to_s(msg)
        pair.s_to_c(msg)
    wire = bytes(pair.c2s) + bytes(pair.s2c)
    assert len(wire) > 200
    assert COOKIE not in wire
    # nor any sizeable piece of it
    for i in range(0, len(COOKIE) - 16, 8):
        assert COOKIE[i : i + 16] not in wire


def test_cookie_never_crosses_the_wire_on_refusal() -> None:
    pair = Pair(client_cookie=COOKIE, server_cookie=OTHER_COOKIE).handshake()
    wire = bytes(pair.c2s) + bytes(pair.s2c)
    assert COOKIE not in wire and OTHER_COOKIE not in wire
    assert COOKIE[7:40] not in wire


@pytest.mark.parametrize("mode", FEEDERS)
def test_wrong_cookie_refused(mode: str) -> None:
    pair = Pair(client_cookie=OTHER_COOKIE, chunker=FEEDERS[mode]).handshake()
    assert pair.server_events[0] == PeerHello(CLIENT, False)
    failed = pair.server_events[1]
    assert type(failed) is HandshakeFailed
    assert failed.code == REFUSE_COOKIE and failed.by_peer is False
    assert len(pair.server_events) == 2
    [client_failed] = pair.client_events
    assert type(client_failed) is HandshakeFailed
    assert client_failed.by_peer is True
    assert client_failed.code == REFUSE_COOKIE
    assert client_failed.reason  # words for the user
    assert pair.client.state == pair.server.state == State.CLOSED
    # no welcome was sent
    assert [f["t"] for f in frames(pair.s2c)] == ["challenge", "refuse"]
    # the ended connection only says it is closed
    assert pair.client.next_event() == ConnectionClosed()
    assert pair.server.next_event() == ConnectionClosed()


def _capture_session() -> Pair:
    return Pair().handshake()


def _replace_frame(data: bytes, t: str, replacement: bytes) -> bytes:
    """Swap the frame of type `t` in `data` for `replacement` (a whole frame)."""
    out = b""
    for obj in frames(data):
        out += replacement if obj.get("t") == t else encode_frame(obj)
    return out


def test_replayed_proof_is_refused() -> None:
    first = _capture_session()
    [old_proof] = [encode_frame(f) for f in frames(first.c2s) if f["t"] == "proof"]
    second = Pair(tamper_c2s=lambda data: _replace_frame(data, "proof", old_proof)).handshake()
    assert type(second.server_events[-1]) is HandshakeFailed
    assert second.server_events[-1].code == REFUSE_COOKIE
    assert second.server.state == State.CLOSED
    assert second.client_events[-1].by_peer is True
    # the server really got the old proof (the replay went through the tamper)
    [seen] = [f for f in frames(second.c2s) if f["t"] == "proof"]
    assert seen["digest"] == frames(old_proof)[0]["digest"]


def test_proofs_differ_between_sessions() -> None:
    a, b = _capture_session(), _capture_session()
    proofs = [next(f["digest"] for f in frames(p.c2s) if f["t"] == "proof") for p in (a, b)]
    welcomes = [next(f["digest"] for f in frames(p.s2c) if f["t"] == "welcome") for p in (a, b)]
    assert proofs[0] != proofs[1]
    assert welcomes[0] != welcomes[1]
    for p in (a, b):
        challenges = [f["challenge"] for f in frames(p.c2s + p.s2c) if "challenge" in f]
        assert len(challenges) == 2 and all(len(c) == CHALLENGE_BYTES for c in challenges)
        assert challenges[0] != challenges[1]


def test_replayed_welcome_is_refused_by_the_client() -> None:
    first = _capture_session()
    [old_welcome] = [encode_frame(f) for f in frames(first.s2c) if f["t"] == "welcome"]
    second = Pair(tamper_s2c=lambda data: _replace_frame(data, "welcome", old_welcome)).handshake()
    assert second.server_events[-1] == HandshakeDone(CLIENT, False)
    [failed] = second.client_events
    assert type(failed) is HandshakeFailed
    assert failed.by_peer is False and failed.code == REFUSE_COOKIE
    assert SERVER in failed.reason
    assert second.client.state == State.CLOSED


def _rename(t: str, new_name: str) -> Callable[[bytes], bytes]:
    def tamper(data: bytes) -> bytes:
        out = b""
        for obj in frames(data):
            if obj.get("t") == t:
                obj = dict(obj, name=new_name)
            out += encode_frame(obj)
        return out

    return tamper


def test_proof_is_bound_to_the_client_name() -> None:
    """A man in the middle relabels the client's hello: the proof no longer fits."""
    pair = Pair(client="x@host", tamper_c2s=_rename("hello", CLIENT)).handshake()
    assert pair.server_events[0] == PeerHello(CLIENT, False)
    assert pair.server_events[-1].code == REFUSE_COOKIE
    assert pair.client_events[-1].code == REFUSE_COOKIE


def test_proof_is_bound_to_the_server_name() -> None:
    pair = Pair(tamper_s2c=_rename("challenge", "y@host")).handshake()
    assert type(pair.server_events[-1]) is HandshakeFailed
    assert pair.server_events[-1].code == REFUSE_COOKIE


def test_transcript_binds_every_field_unambiguously() -> None:
    """The transcript is msgpack of a list: ('ab@c','d@e') and ('a@bc', ...)-style
    splits differ, and so does every single field."""
    a, b = os.urandom(CHALLENGE_BYTES), os.urandom(CHALLENGE_BYTES)
    base = ("a@b", "c@d", a, b, False, [AES_GCM, HMAC_SHA256], AES_GCM)
    variants = [
        base,
        ("a@bc", "@d", a, b, False, [AES_GCM, HMAC_SHA256], AES_GCM),
        ("c@d", "a@b", a, b, False, [AES_GCM, HMAC_SHA256], AES_GCM),
        ("a@b", "c@d", b, a, False, [AES_GCM, HMAC_SHA256], AES_GCM),
        ("a@b", "c@d", a, b, True, [AES_GCM, HMAC_SHA256], AES_GCM),
        ("a@b", "c@d", a, b, False, [HMAC_SHA256], AES_GCM),
        ("a@b", "c@d", a, b, False, [AES_GCM, HMAC_SHA256], HMAC_SHA256),
    ]
    assert len({protocol.transcript(*v) for v in variants}) == len(variants)  # type: ignore[arg-type]
    digests = {
        hmac_sha256(COOKIE, b"c" + protocol.transcript(*base)),  # type: ignore[arg-type]
        hmac_sha256(COOKIE, b"s" + protocol.transcript(*base)),  # type: ignore[arg-type]
        hmac_sha256(OTHER_COOKIE, b"c" + protocol.transcript(*base)),  # type: ignore[arg-type]
    }
    assert len(digests) == 3


@pytest.mark.parametrize("mode", FEEDERS)
def test_server_refusal_reaches_the_client(mode: str) -> None:
    refusals = []

    def refuse(conn: Connection, event: Any) -> Any:
        if type(event) is PeerHello:
            failed = conn.refuse("already connected", REFUSE_NAME_IN_USE)
            refusals.append(failed)
            return failed
        return None

    pair = Pair(decide=refuse, chunker=FEEDERS[mode]).handshake()
    assert refusals == [
        HandshakeFailed("already connected", by_peer=False, code=REFUSE_NAME_IN_USE)
    ]
    assert pair.client_events == [
        HandshakeFailed("already connected", by_peer=True, code=REFUSE_NAME_IN_USE)
    ]
    assert pair.server.state == State.CLOSED
    assert [f["t"] for f in frames(pair.s2c)] == ["refuse"]


def test_refuse_default_code() -> None:
    pair = Pair(decide=lambda c, e: c.refuse("no") if type(e) is PeerHello else None).handshake()
    assert pair.client_events == [HandshakeFailed("no", by_peer=True, code=protocol.REFUSE_OTHER)]


def test_refusal_reason_is_bounded_but_always_fits_the_handshake_frame() -> None:
    """A long refusal reason must still reach the client (as HandshakeFailed),
    whatever characters it is written in."""
    for reason in ("r" * 5000, "\u20ac" * 1000):
        pair = Pair(
            decide=lambda c, e, reason=reason: c.refuse(reason) if type(e) is PeerHello else None
        )
        pair.handshake()
        [failed] = pair.client_events
        assert type(failed) is HandshakeFailed
        assert reason.startswith(failed.reason) and 0 < len(failed.reason) <= 400


def test_refuse_without_fields_still_fails_handshake() -> None:
    client = Connection(Role.CLIENT, CLIENT, COOKIE)
    client.initiate()
    assert feed(client, encode_frame({"t": "refuse"})) == [
        HandshakeFailed("refused", by_peer=True, code=protocol.REFUSE_OTHER)
    ]


@pytest.mark.parametrize(
    ("client", "server"),
    [
        ("c@host", "s@host.example.org"),
        ("c@host.example.org", "s@host"),
        ("c@10.0.0.1", "s@host"),
    ],
)
def test_mixed_short_and_long_names_refused(client: str, server: str) -> None:
    pair = Pair(client=client, server=server).handshake()
    [failed] = pair.server_events  # no PeerHello: the core refuses by itself
    assert failed.code == REFUSE_MIXED_NAMES and failed.by_peer is False
    [client_failed] = pair.client_events
    assert client_failed.code == REFUSE_MIXED_NAMES and client_failed.by_peer is True
    assert client in client_failed.reason and server in client_failed.reason


def test_own_name_refused() -> None:
    pair = Pair(client=SERVER, server=SERVER).handshake()
    [failed] = pair.server_events
    assert failed.code == REFUSE_NAME_IN_USE
    assert pair.client_events[0].code == REFUSE_NAME_IN_USE
    assert SERVER in pair.client_events[0].reason


def _hello(**over: Any) -> dict[str, Any]:
    hello = {
        "t": "hello",
        "v": VERSION,
        "name": CLIENT,
        "hidden": False,
        "challenge": os.urandom(CHALLENGE_BYTES),
        "macs": [HMAC_SHA256],
    }
    hello.update(over)
    return {k: v for k, v in hello.items() if v is not _DROP}


_DROP = object()


def _server_fed(data: bytes) -> Connection:
    server = Connection(Role.SERVER, SERVER, COOKIE)
    server.receive_data(data)
    return server


@pytest.mark.parametrize("mode", FEEDERS)
def test_crafted_hello_accepted(mode: str) -> None:
    server = Connection(Role.SERVER, SERVER, COOKIE)
    assert feed(server, encode_frame(_hello(hidden=True)), FEEDERS[mode]) == [
        PeerHello(CLIENT, True)
    ]


@pytest.mark.parametrize("version", [1, 99])
def test_other_versions_refused_cleanly_by_server(version: int) -> None:
    """An older node (version 1 sent no suites) gets a refusal it can show."""
    hello = _hello(v=version, macs=_DROP) if version == 1 else _hello(v=version)
    server = _server_fed(encode_frame(hello))
    [failed] = drain(server)
    assert type(failed) is HandshakeFailed and failed.code == REFUSE_VERSION
    assert server.state == State.CLOSED
    [refusal] = frames(server.data_to_send())
    assert refusal["t"] == "refuse" and refusal["code"] == REFUSE_VERSION
    assert str(version) in refusal["reason"] and str(VERSION) in refusal["reason"]


def test_bad_version_refused_by_client() -> None:
    client = Connection(Role.CLIENT, CLIENT, COOKIE)
    client.initiate()
    client.data_to_send()
    client.receive_data(
        encode_frame(
            {"t": "challenge", "v": 99, "name": SERVER, "challenge": os.urandom(CHALLENGE_BYTES)}
        )
    )
    with pytest.raises(RemoteProtocolError, match="99"):
        client.next_event()
    assert client.state == State.ERROR
    assert client.data_to_send() == b""  # no proof was made


@pytest.mark.parametrize(
    "hello",
    [
        _hello(v=_DROP),
        _hello(name=_DROP),
        _hello(name=5),
        _hello(name="no-at-sign"),
        _hello(name="a@b@c"),
        _hello(challenge=_DROP),
        _hello(challenge=b"short"),
        _hello(challenge="x" * CHALLENGE_BYTES),
        _hello(macs=_DROP),
        _hello(macs=[]),
        _hello(macs=HMAC_SHA256),
        _hello(macs=[1]),
        _hello(macs=["x" * 33]),
        _hello(macs=[HMAC_SHA256] * 9),
        _hello(v="2"),
        _hello(t="proof"),
        _hello(t="welcome"),
        _hello(t="refuse"),
        _hello(t=5),
        {"v": VERSION},
    ],
)
def test_malformed_hello_refused(hello: dict[str, Any]) -> None:
    server = _server_fed(encode_frame(hello))
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    assert server.state == State.ERROR
    assert server.data_to_send() == b""


def body(frame: bytes) -> Any:
    """The message in one tagged frame (length, body, tag)."""
    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4 - TAG_BYTES
    return msgpack.unpackb(frame[4:-TAG_BYTES], raw=False)


def test_registry_messages_keep_their_wire_form() -> None:
    """The typed registry events are the frames the driver used to build by hand."""
    pair = connected()
    assert body(pair.client.send(NameClaimed("x", 1.5))) == [K_REGISTRY, "add", ["x", 1.5]]
    assert body(pair.client.send(NameReleased("x"))) == [K_REGISTRY, "remove", "x"]
    assert body(pair.client.send(NamesHeld([("x", 1.5)]))) == [K_REGISTRY, "names", [["x", 1.5]]]
    assert body(pair.client.send(SyncRequest(3))) == [K_REGISTRY, "sync", 3]
    assert body(pair.client.send(SyncAck(3))) == [K_REGISTRY, "sync_ack", 3]
    assert body(pair.client.send(Goodbye())) == [K_REGISTRY, "bye", None]
    # integer stamps (an older or other sender) arrive as floats
    pair = connected()
    assert feed(pair.server, pair.client._frame([K_REGISTRY, "names", [["y", 2]]])) == [
        NamesHeld([("y", 2.0)])
    ]


def test_unknown_registry_operations_are_skipped() -> None:
    """A newer peer's registry operation does not end the link: it is passed over."""
    pair = connected()
    data = pair.client._frame([K_REGISTRY, "claim", {"name": "x"}]) + pair.client.send(Tick())
    assert feed(pair.server, data) == [Tick()]
    assert pair.server.state == State.CONNECTED


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
        bytes(range(256)),
        b"\xff" * 8,
        b"\x00\x00\x00\x01\xc1",  # a msgpack byte that is never used
        b"\x00\x00\x00\x02\x92\x01",  # a truncated body inside a complete frame
        encode_frame([1, 2, 3]),  # a message kind before the handshake
        encode_frame("hello"),
        encode_frame({"t": "hello"}) + b"junk",
        encode_frame({1: 2}),  # non-string map keys
    ],
)
@pytest.mark.parametrize("role", [Role.SERVER, Role.CLIENT])
def test_garbage_before_the_handshake(garbage: bytes, role: str) -> None:
    conn = Connection(role, SERVER if role == Role.SERVER else CLIENT, COOKIE)
    if role == Role.CLIENT:
        conn.initiate()
        conn.data_to_send()
    conn.receive_data(garbage)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.state == State.ERROR


def test_random_garbage_before_the_handshake() -> None:
    for seed in range(50):
        data = os.urandom(64 + seed)
        server = Connection(Role.SERVER, SERVER, COOKIE)
        server.receive_data(data)
        server.receive_data(b"")
        with pytest.raises(RemoteProtocolError):
            drain(server, accept_all)


def test_handshake_frame_over_the_limit_refused_on_its_header() -> None:
    server = _server_fed(struct.pack(">I", HANDSHAKE_MAX_FRAME + 1))
    with pytest.raises(RemoteProtocolError, match=str(HANDSHAKE_MAX_FRAME + 1)):
        server.next_event()
    assert server.state == State.ERROR


def _padded_hello(body_len: int) -> bytes:
    pad = 0
    while True:
        frame = encode_frame(_hello(pad="p" * pad))
        if len(frame) - 4 >= body_len:
            assert len(frame) - 4 == body_len
            return frame
        pad += 1


def test_handshake_frame_of_exactly_the_limit_passes() -> None:
    frame = _padded_hello(HANDSHAKE_MAX_FRAME)
    server = _server_fed(frame)
    assert server.next_event() == PeerHello(CLIENT, False)
    over = _padded_hello(HANDSHAKE_MAX_FRAME + 1)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        _server_fed(over).next_event()


# ---- messages after the handshake -------------------------------------------


def sample_messages() -> list[Any]:
    return [
        Call(1, None, "repos", "list", ["alice", {"limit": 10}]),
        Call(2**64 - 1, "am@host", "users", "get", [b"\x00\xff", None, True, 1.5, -3]),
        Call(0, None, "", "", []),
        Reply(1, None),
        Reply(2, {"nested": [1, [2, [3, {"x": b"bytes"}]]], "f": -0.25, "big": 2**63}),
        Reply(3, "\u00e9t\u00e9 \U0001f600"),
        ErrorReply(4, "no_such_name", "nobody is called repos"),
        ErrorReply(5, "internal", ""),
        Cast(None, "log", "write", ["line"]),
        Cast("af@host", "hooks", "run", {"ref": "refs/heads/main"}),
        Cancel(0),
        Cancel(99),
        Tick(),
        NamesHeld([("repos", 1.5), ("users", 2.0)]),
        NamesHeld([]),
        NameClaimed("x", 3.25),
        NameReleased("x"),
        SyncRequest(7),
        SyncAck(7),
        Goodbye(),
        Peers(["a@host", "b@host"]),
        Peers([]),
    ]


MESSAGES = sample_messages()


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("mode", ["whole", "bytewise", "trailing"])
def test_every_message_round_trips_both_ways(msg: Any, mode: str) -> None:
    pair = connected()
    for send, receiver, sender in (
        (pair.c_to_s, pair.server, pair.client),
        (pair.s_to_c, pair.client, pair.server),
    ):
        if mode == "trailing":
            cancel = sender.send(msg) + sender.send(Tick()) + sender.send(Cancel(5))
            assert feed(receiver, cancel[:-3]) == [msg, Tick()]
            receiver.receive_data(cancel[-3:])
            assert drain(receiver) == [Cancel(5)]
        else:
            assert send(msg, FEEDERS[mode]) == [msg]


def test_many_messages_in_one_chunk_and_bytewise() -> None:
    pair = connected()
    data = b"".join(pair.client.send(m) for m in MESSAGES)
    assert feed(pair.server, data) == MESSAGES
    data = b"".join(pair.client.send(m) for m in MESSAGES)
    assert feed(pair.server, data, chunks_bytewise) == MESSAGES
    # and split at every point into two (each time on a new link: the same bytes
    # twice on one link would be a replay)
    for cut in range(1, len(data), 7):  # (b"" would mean end of file)
        pair = connected()
        data = b"".join(pair.client.send(m) for m in MESSAGES)
        pair.server.receive_data(data[:cut])
        got = drain(pair.server)
        pair.server.receive_data(data[cut:])
        assert got + drain(pair.server) == MESSAGES


def test_events_are_immutable_and_compared_by_value() -> None:
    call = Call(1, None, "t", "m", [1])
    with pytest.raises(AttributeError):
        call.req_id = 2  # type: ignore[misc]
    assert call == Call(req_id=1, node=None, target="t", method="m", args=[1])
    assert call != Call(2, None, "t", "m", [1])
    assert Reply(1, None) != ErrorReply(1, "k", "m")
    assert hash(Tick()) == hash(protocol.TICK)
    assert HandshakeFailed("r", by_peer=True).code == protocol.REFUSE_OTHER
    with pytest.raises(TypeError):
        Reply(1)
    with pytest.raises(TypeError):
        Reply(1, 2, 3)
    with pytest.raises(TypeError):
        Reply(1, value=2, bogus=3)


def test_frame_over_max_frame_refused_exactly_max_passes() -> None:
    limit = 2000
    pair = connected(max_frame=limit)

    def reply_of_body(n: int) -> Reply:
        for pad in range(n):
            msg = Reply(1, b"x" * pad)
            if len(msgpack.packb([K_REPLY, 1, msg.value])) == n:
                return msg
        raise AssertionError(n)

    exact = reply_of_body(limit)
    assert pair.c_to_s(exact) == [exact]
    assert pair.c_to_s(exact, chunks_bytewise) == [exact]
    over_frame = encode_frame([K_REPLY, 1, b"x" * limit]) + bytes(TAG_BYTES)
    assert len(over_frame) - 4 - TAG_BYTES > limit
    with pytest.raises(LocalProtocolError, match="exceeds"):
        pair.client.send(Reply(1, b"x" * limit))
    assert pair.client.state == State.CONNECTED  # nothing was sent: the link lives on
    pair.server.receive_data(over_frame[:4])  # the header alone is enough to refuse
    size = len(over_frame) - 4 - TAG_BYTES
    with pytest.raises(RemoteProtocolError, match=f"{size} bytes"):
        pair.server.next_event()
    assert pair.server.state == State.ERROR


@pytest.mark.parametrize("size", [0, 10, LARGE_BODY - 40, LARGE_BODY, 65536])
def test_send_call_and_send_reply_are_the_events_without_the_objects(size: int) -> None:
    """The hot paths (no event object, fewer calls): what arrives is the Call and
    the Reply, small or large, whole or byte by byte; a map's keys are checked."""
    pair = connected()
    for args in (b"a" * size, {"k": [b"a" * size]}):
        data = b"".join(pair.client.send_call(7, None, "echo", "echo", args))
        assert feed(pair.server, data) == [Call(7, None, "echo", "echo", args)]
        data = b"".join(pair.server.send_reply(7, args))
        assert feed(pair.client, data, chunks_bytewise if size < 100 else chunks_whole) == [
            Reply(7, args)
        ]
    with pytest.raises(LocalProtocolError, match="map key"):
        pair.client.send_call(8, "n@h", "t", "m", {1: "x"})
    with pytest.raises(LocalProtocolError, match="map key"):
        pair.server.send_reply(8, [{2: "y"}])
    assert pair.client.state == pair.server.state == State.CONNECTED  # nothing went out
    ended = connected()
    ended.client.receive_data(b"")
    assert ended.client.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError, match="cannot send Call"):
        ended.client.send_call(1, None, "t", "m", None)
    with pytest.raises(LocalProtocolError, match="cannot send Reply"):
        ended.client.send_reply(1, None)


def test_decoder_room_holds_the_rest_of_a_large_frame() -> None:
    """room(least): at least `least` bytes to read into, and all of a frame begun."""
    pair = connected()
    dec = pair.server.decoder
    assert len(dec.room(100)) >= 100
    frame = pair.client.send(Reply(1, b"z" * 300_000))
    view = dec.room(1000)
    view[:1000] = frame[:1000]
    del view
    dec.filled(1000)
    assert pair.server.next_event() is NEED_DATA
    rest = dec.room(10)
    assert len(rest) >= len(frame) - 1000
    rest[: len(frame) - 1000] = frame[1000:]
    del rest
    dec.filled(len(frame) - 1000)
    assert pair.server.next_event() == Reply(1, b"z" * 300_000)
    assert pair.server.next_event() is NEED_DATA


def test_truncated_frame_then_eof() -> None:
    pair = connected()
    frame = pair.client.send(Reply(1, "hello world"))
    for cut in (1, 3, 4, len(frame) - 1):
        conn = connected().server
        conn.receive_data(frame[:cut])
        assert conn.next_event() is NEED_DATA
        conn.receive_data(b"")
        with pytest.raises(RemoteProtocolError, match="in the middle of a frame"):
            conn.next_event()
        assert conn.state == State.ERROR


@pytest.mark.parametrize("mode", FEEDERS)
def test_clean_eof_between_frames(mode: str) -> None:
    pair = connected()
    data = pair.client.send(Reply(1, 2))
    events = feed(pair.server, data, FEEDERS[mode])
    pair.server.receive_data(b"")
    events += drain(pair.server)
    assert events == [Reply(1, 2), ConnectionClosed()]
    assert pair.server.state == State.CLOSED
    assert pair.server.next_event() == ConnectionClosed()


def test_eof_glued_after_data() -> None:
    pair = connected()
    pair.server.receive_data(pair.client.send(Tick()))
    pair.server.receive_data(b"")
    assert [pair.server.next_event(), pair.server.next_event()] == [Tick(), ConnectionClosed()]


@pytest.mark.parametrize("stage", ["before_hello", "mid_hello", "after_hello", "after_proof"])
def test_eof_during_handshake(stage: str) -> None:
    client = Connection(Role.CLIENT, CLIENT, COOKIE)
    server = Connection(Role.SERVER, SERVER, COOKIE)
    client.initiate()
    hello = client.data_to_send()
    victim = server
    if stage == "mid_hello":
        server.receive_data(hello[:10])
    elif stage in ("after_hello", "after_proof"):
        feed(server, hello, on_event=accept_all)
        victim = client
        if stage == "after_proof":
            client.receive_data(server.data_to_send())
            assert client.next_event() is NEED_DATA  # proof queued, welcome awaited
            assert client.data_to_send()
    victim.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        victim.next_event()
    assert victim.state == State.ERROR


def test_send_before_handshake_is_a_local_error() -> None:
    for conn in (Connection(Role.CLIENT, CLIENT, COOKIE), Connection(Role.SERVER, SERVER, COOKIE)):
        with pytest.raises(LocalProtocolError):
            conn.send(Tick())
        with pytest.raises(LocalProtocolError):
            conn.send(Call(1, None, "t", "m", []))


def test_send_after_the_connection_ended_is_a_local_error() -> None:
    """After a clean close, a refusal or a remote error, send() says the API was misused."""
    closed = connected()
    closed.server.receive_data(b"")
    assert closed.server.next_event() == ConnectionClosed()
    broken = connected()
    broken.server.receive_data(broken.client._frame({"not": "a message"}))
    with pytest.raises(RemoteProtocolError):
        broken.server.next_event()
    refused = Pair(client_cookie=OTHER_COOKIE).handshake()
    for conn in (closed.server, broken.server, refused.server, refused.client):
        assert conn.state in (State.CLOSED, State.ERROR)
        with pytest.raises(LocalProtocolError, match="cannot send Tick"):
            conn.send(Tick())


def test_send_non_message_is_a_local_error() -> None:
    pair = connected()
    for event in (
        PeerHello(CLIENT, False),
        HandshakeDone(CLIENT, False),
        ConnectionClosed(),
        HandshakeFailed("x", True),
    ):
        with pytest.raises(LocalProtocolError, match="not a message"):
            pair.client.send(event)


@pytest.mark.parametrize(
    "value", [object(), {1, 2}, 2**64, -(2**63) - 1, [object()], (1, object())]
)
def test_send_unencodable_is_a_local_error(value: Any) -> None:
    pair = connected()
    with pytest.raises(LocalProtocolError, match="cannot encode"):
        pair.client.send(Reply(1, value))
    # The link is still usable: a handler's bad answer must not take the link down.
    assert pair.client.state == State.CONNECTED
    assert pair.c_to_s(Reply(1, "fine")) == [Reply(1, "fine")]


@pytest.mark.parametrize(
    "value", [{1: "one"}, {None: 1}, {1.5: 2}, {(1, 2): 3}, {"outer": {7: "inner"}}]
)
def test_what_send_accepts_the_peer_accepts(value: Any) -> None:
    """send() must refuse (LocalProtocolError) any value the receiving side would
    reject; otherwise one handler's answer with, say, integer dict keys kills the
    whole link (and every other pending call on it) at the peer."""
    pair = connected()
    try:
        data = pair.server.send(Reply(1, value))
    except LocalProtocolError:
        return  # refused at the source: the link lives on
    assert pair.server.state == State.CONNECTED
    pair.client.receive_data(data)
    event = pair.client.next_event()  # must not raise RemoteProtocolError
    assert type(event) is Reply and event.req_id == 1


def test_misused_handshake_api_is_a_local_error() -> None:
    client = Connection(Role.CLIENT, CLIENT, COOKIE)
    server = Connection(Role.SERVER, SERVER, COOKIE)
    with pytest.raises(LocalProtocolError):
        server.initiate()
    with pytest.raises(LocalProtocolError):
        client.accept()
    with pytest.raises(LocalProtocolError):
        client.refuse("no")
    with pytest.raises(LocalProtocolError):
        server.accept()  # no PeerHello yet
    client.initiate()
    with pytest.raises(LocalProtocolError):
        client.initiate()
    with pytest.raises(LocalProtocolError):
        Connection(Role.CLIENT, CLIENT, b"")
    with pytest.raises(ValueError):
        Connection(Role.CLIENT, "not a node", COOKIE)


def test_accept_after_refuse_is_a_local_error() -> None:
    client = Connection(Role.CLIENT, CLIENT, COOKIE)
    server = Connection(Role.SERVER, SERVER, COOKIE)
    client.initiate()
    assert feed(server, client.data_to_send()) == [PeerHello(CLIENT, False)]
    server.refuse("go away")
    with pytest.raises(LocalProtocolError):
        server.refuse("twice")
    with pytest.raises(LocalProtocolError):
        server.accept()
    # nothing but the refusal goes out
    assert [f["t"] for f in frames(server.data_to_send())] == ["refuse"]


def test_refuse_after_the_handshake_is_a_local_error() -> None:
    pair = connected()
    with pytest.raises(LocalProtocolError):
        pair.server.refuse("late")


MALFORMED = [
    [K_CALL, 1, None, "t", "m"],
    [K_CALL, 1, None, "t", "m", [], 7],
    [K_CALL, "1", None, "t", "m", []],
    [K_CALL, 1.0, None, "t", "m", []],
    [K_CALL, True, None, "t", "m", []],
    [K_CALL, -1, None, "t", "m", []],
    [K_CALL, None, None, "t", "m", []],
    [K_CALL, 1, 5, "t", "m", []],
    [K_CALL, 1, None, 5, "m", []],
    [K_CALL, 1, None, "t", 7, []],
    [K_CALL, 1, None, "t", None, []],
    [K_CALL, 1, None, "t", b"m", []],
    [K_REPLY, 1],
    [K_REPLY, 1, 2, 3],
    [K_REPLY, -1, None],
    [K_REPLY, "x", None],
    [K_REPLY, 1.0, None],
    [K_REPLY, True, None],
    [K_CALL, 1, None, b"t", "m", []],
    [K_CALL, 1, b"n@h", "t", "m", []],
    [K_ERROR, 1, "kind"],
    [K_ERROR, 1, 5, "message"],
    [K_ERROR, 1, "kind", None],
    [K_ERROR, -2, "kind", "message"],
    [K_CAST, None, "t", "m"],
    [K_CAST, None, "t", 5, []],
    [K_CAST, 3, "t", "m", []],
    [K_CANCEL],
    [K_CANCEL, "x"],
    [K_CANCEL, -3],
    [K_CANCEL, 1, 2],
    [K_TICK, 1],
    [K_REGISTRY, 5, {}],
    [K_REGISTRY, "op"],
    [K_REGISTRY, "add", ["x"]],
    [K_REGISTRY, "add", ["x", "1.5"]],
    [K_REGISTRY, "add", [5, 1.5]],
    [K_REGISTRY, "add", ["x", True]],
    [K_REGISTRY, "add", {"name": "x", "stamp": 1.5}],
    [K_REGISTRY, "remove", ["x"]],
    [K_REGISTRY, "names", [["x"]]],
    [K_REGISTRY, "names", [["x", 1.5, 2]]],
    [K_REGISTRY, "names", ["x", 1.5]],
    [K_REGISTRY, "names", {"x": 1.5}],
    [K_REGISTRY, "sync", "token"],
    [K_REGISTRY, "sync_ack", None],
    [K_PEERS, "a@b"],
    [K_PEERS, [1]],
    [K_PEERS, ["a@b"], 1],
    [0],
    [9, 1, 2],
    [99],
    [-1],
    ["call", 1, None, "t", "m", []],
    [None],
    [[K_CALL], 1],
    [{"k": 1}],
    [],
    {"t": "call"},
    {"kind": K_CALL, "req_id": 1},
    5,
    "text",
    None,
    b"bytes",
]


@pytest.mark.parametrize("obj", MALFORMED, ids=repr)
def test_malformed_messages_are_remote_errors(obj: Any) -> None:
    pair = connected()
    pair.server.receive_data(pair.client._frame(obj))  # authenticated, but no message
    with pytest.raises(RemoteProtocolError, match=r"message|malformed|request id|names|peers"):
        pair.server.next_event()
    # An error is final: the connection is in ERROR and only says it is closed.
    assert pair.server.state == State.ERROR
    pair.server.receive_data(pair.client.send(Tick()))
    assert pair.server.next_event() == ConnectionClosed()
    assert pair.server.next_event() == ConnectionClosed()


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\n\r\n" + bytes(TAG_BYTES),
        b"\xff\xff\xff\xff",
        b"\x00\x00\x00\x01\xc1" + bytes(TAG_BYTES),
        b"\x00\x00\x00\x03\x91\x01\x02" + bytes(TAG_BYTES),
        encode_frame({"t": "hello"}) + bytes(TAG_BYTES),
        "sealed:\xc1",  # authenticated, but undecodable
        "sealed:\x91\x01\x02",  # authenticated, extra data after a complete body
    ],
)
def test_garbage_after_the_handshake(garbage: bytes | str) -> None:
    pair = connected()
    tick = pair.client.send(Tick())
    if isinstance(garbage, str):
        garbage = pair.client._seal(garbage.removeprefix("sealed:").encode("latin-1"))
    pair.server.receive_data(tick + garbage)
    assert pair.server.next_event() == Tick()
    with pytest.raises(RemoteProtocolError):
        pair.server.next_event()
    assert pair.server.state == State.ERROR
    assert pair.server.next_event() == ConnectionClosed()


def test_handshake_frames_after_the_handshake_are_errors() -> None:
    pair = connected()
    pair.client.receive_data(pair.server._frame({"t": "refuse", "reason": "late"}))
    with pytest.raises(RemoteProtocolError):
        pair.client.next_event()


def test_unexpected_handshake_step_is_an_error() -> None:
    """A client answering a challenge it never got, or a server sending welcome first."""
    server = Connection(Role.SERVER, SERVER, COOKIE)
    server.receive_data(encode_frame({"t": "proof", "digest": b"x" * 32}))
    with pytest.raises(RemoteProtocolError, match="unexpected"):
        server.next_event()
    client = Connection(Role.CLIENT, CLIENT, COOKIE)
    client.initiate()
    client.receive_data(encode_frame({"t": "welcome", "digest": b"x" * 32}))
    with pytest.raises(RemoteProtocolError, match="unexpected"):
        client.next_event()


def test_server_waits_for_decision_before_reading_the_proof() -> None:
    """Bytes arriving between PeerHello and accept() are not taken as a proof."""
    client = Connection(Role.CLIENT, CLIENT, COOKIE)
    server = Connection(Role.SERVER, SERVER, COOKIE)
    client.initiate()
    assert feed(server, client.data_to_send()) == [PeerHello(CLIENT, False)]
    server.receive_data(encode_frame({"t": "proof", "digest": b"\0" * 32}))
    with pytest.raises(RemoteProtocolError):
        server.next_event()


# ---- hmac ---------------------------------------------------------------------


@FAST
@given(key=st.binary(min_size=0, max_size=200), msg=st.binary(max_size=500))
def test_hmac_sha256_matches_stdlib(key: bytes, msg: bytes) -> None:
    assert hmac_sha256(key, msg) == hmac.new(key, msg, "sha256").digest()


@pytest.mark.parametrize("n", range(201))
def test_hmac_sha256_every_key_length(n: int) -> None:
    key = bytes((i * 7 + n) % 256 for i in range(n))
    msg = b"message %d" % n
    assert hmac_sha256(key, msg) == hmac.new(key, msg, "sha256").digest()


# ---- property tests --------------------------------------------------------------


@FAST
@given(
    data=st.binary(max_size=2000),
    max_frame=st.sampled_from([0, 1, 16, 1024, 1 << 24]),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
    eof=st.booleans(),
)
def test_frame_decoder_random_bytes_only_remote_errors(
    data: bytes, max_frame: int, cuts: list[int], eof: bool
) -> None:
    dec = FrameDecoder(max_frame)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    steps = 0
    try:
        for a, b in itertools.pairwise(points):
            dec.feed(data[a:b])
            while True:
                steps += 1
                assert steps <= len(data) + len(points) + 2, "the decoder spins"
                obj = dec.next_frame()
                if obj is NEED_DATA:
                    break
        if eof:
            dec.feed(b"")
            while True:
                steps += 1
                assert steps <= len(data) + len(points) + 4, "the decoder spins"
                obj = dec.next_frame()
                if obj == ConnectionClosed():
                    break
                assert obj is not NEED_DATA  # at EOF there is nothing to wait for
    except RemoteProtocolError:
        pass


def _float() -> st.SearchStrategy[float]:
    return st.floats(allow_nan=False)


msgpack_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    _float(),
    st.text(max_size=20),
    st.binary(max_size=20),
)
msgpack_values = st.recursive(
    msgpack_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
req_ids = st.integers(0, 2**64 - 1)
node_names = st.sampled_from(["am@host", "af@git.example.org", "as_123@host"])
texts = st.text(max_size=12)

messages = st.one_of(
    st.builds(Call, req_ids, st.none() | node_names, texts, texts, msgpack_values),
    st.builds(Reply, req_ids, msgpack_values),
    st.builds(ErrorReply, req_ids, texts, texts),
    st.builds(Cast, st.none() | node_names, texts, texts, msgpack_values),
    st.builds(Cancel, req_ids),
    st.just(Tick()),
    st.builds(NamesHeld, st.lists(st.tuples(texts, _float()), max_size=4)),
    st.builds(NameClaimed, texts, _float()),
    st.builds(NameReleased, texts),
    st.builds(SyncRequest, st.integers(0, 2**63)),
    st.builds(SyncAck, st.integers(0, 2**63)),
    st.just(Goodbye()),
    st.builds(Peers, st.lists(node_names, max_size=4)),
)


def _same(a: Any, b: Any) -> bool:
    """Equality that also tells bool from int and 0.0 from -0.0 (== does neither)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, protocol._Event):
        return all(_same(x, y) for x, y in zip(a._values(), b._values(), strict=False))
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=False))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


@FAST
@given(
    msgs=st.lists(messages, max_size=12),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
    to_server=st.booleans(),
)
def test_random_messages_split_anywhere_decode_in_order(
    msgs: list[Any], cuts: list[int], to_server: bool
) -> None:
    pair = connected()
    sender, receiver = (pair.client, pair.server) if to_server else (pair.server, pair.client)
    data = b"".join(sender.send(m) for m in msgs)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    events: list[Any] = []
    for a, b in itertools.pairwise(points):
        receiver.receive_data(data[a:b])
        events += drain(receiver)
    assert len(events) == len(msgs)
    for got, want in zip(events, msgs, strict=False):
        assert _same(got, want), (got, want)
    receiver.receive_data(b"")
    assert drain(receiver) == [ConnectionClosed()]


fuzz_frames = st.one_of(
    st.binary(max_size=64),  # raw bytes
    st.binary(max_size=64).map(lambda b: struct.pack(">I", len(b)) + b),  # framed junk
    st.lists(st.one_of(st.integers(-2, 10), msgpack_values), min_size=0, max_size=7).map(
        encode_frame
    ),  # structured junk: lists that look like messages
    st.lists(msgpack_values, max_size=7).flatmap(
        lambda rest: st.integers(1, 8).map(lambda k: encode_frame([k, *rest]))
    ),
    messages.map(lambda m: encode_frame(_wire(m))),  # valid messages between the junk
)


class _Sealed:
    """Structured junk that the test tags as the peer would: it passes the frame
    authentication and reaches the message checks."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj


sealed_junk = st.one_of(
    st.lists(st.one_of(st.integers(-2, 10), msgpack_values), max_size=7),
    st.lists(msgpack_values, max_size=7).flatmap(
        lambda rest: st.integers(1, 8).map(lambda k: [k, *rest])
    ),
    messages.map(lambda m: _wire(m)),
    msgpack_values,
).map(_Sealed)


def _wire(msg: Any) -> Any:
    pair_conn = _CONNECTED_SENDER
    return msgpack.unpackb(pair_conn.send(msg)[4:-TAG_BYTES], raw=False)


_CONNECTED_SENDER = connected().client


@FAST
@given(chunks=st.lists(fuzz_frames | sealed_junk, max_size=6), eof=st.booleans())
def test_connected_fed_random_bytes_only_remote_errors(
    chunks: list[bytes | _Sealed], eof: bool
) -> None:
    pair = connected()
    server = pair.server
    try:
        for chunk in chunks:
            if isinstance(chunk, _Sealed):
                chunk = pair.client._frame(chunk.obj)
            server.receive_data(chunk)
            for event in drain(server):
                assert isinstance(event, protocol._Event)
        if eof:
            server.receive_data(b"")
            events = drain(server)
            assert events and type(events[-1]) is ConnectionClosed
    except RemoteProtocolError:
        assert server.state == State.ERROR
    else:
        assert server.state in (State.CONNECTED, State.CLOSED)


@FAST
@given(chunks=st.lists(fuzz_frames, max_size=4), role=st.sampled_from([Role.CLIENT, Role.SERVER]))
def test_handshake_fed_random_bytes_only_remote_errors(chunks: list[bytes], role: str) -> None:
    conn = Connection(role, CLIENT if role == Role.CLIENT else SERVER, COOKIE)
    if role == Role.CLIENT:
        conn.initiate()
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            for event in drain(conn, accept_all):
                assert type(event) in (PeerHello, PeerLinked, HandshakeFailed, HandshakeDone)
                assert type(event) is not HandshakeDone  # nobody proved the cookie
    except RemoteProtocolError:
        assert conn.state == State.ERROR


def test_protocol_errors_are_two_kinds() -> None:
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)


# ---- authenticated frames --------------------------------------------------------


def _three_frames(pair: Pair) -> list[bytes]:
    return [pair.client.send(Call(i, None, "svc", "m", [i])) for i in (1, 2, 3)]


AUTH_ATTACKS: dict[str, Callable[[Pair, list[bytes]], bytes]] = {
    # a relay that never knew the cookie writes a frame of its own
    "inject": lambda pair, f: (
        f[0]
        + encode_frame([K_CALL, 4242, None, "am_user_db", "list_users", {"actor": "system"}])
        + bytes(TAG_BYTES)
    ),
    "inject_tag_of_another": lambda pair, f: (
        f[0]
        + encode_frame([K_CALL, 4242, None, "am_user_db", "list_users", {}])
        + f[1][-TAG_BYTES:]
    ),
    "replay": lambda pair, f: f[0] + f[0],
    "reorder": lambda pair, f: f[0] + f[2] + f[1],
    "drop": lambda pair, f: f[0] + f[2],
    "flip_body_bit": lambda pair, f: f[0] + f[1][:10] + bytes([f[1][10] ^ 1]) + f[1][11:],
    "flip_tag_bit": lambda pair, f: f[0] + f[1][:-1] + bytes([f[1][-1] ^ 0x80]),
    "truncated_tag": lambda pair, f: f[0] + f[1][:-1] + f[2],
    # the server's own frame sent back to it (the directions have their own keys)
    "reflect": lambda pair, f: f[0] + pair.server.send(Call(9, None, "svc", "m", [])),
    # a frame of another link (same cookie, same names, another handshake)
    "other_link": lambda pair, f: f[0] + _three_frames(connected())[1],
}


@pytest.mark.parametrize("suite", [AES_GCM, HMAC_SHA256])
@pytest.mark.parametrize("attack", AUTH_ATTACKS)
def test_a_frame_that_fails_authentication_ends_the_connection(attack: str, suite: str) -> None:
    pair = connected(client_macs=(suite,))
    assert pair.client.suite == pair.server.suite == suite
    frames_ = _three_frames(pair)
    data = AUTH_ATTACKS[attack](pair, frames_)
    pair.server.receive_data(data)
    assert pair.server.next_event() == Call(1, None, "svc", "m", [1])  # before the attack
    with pytest.raises(RemoteProtocolError, match="authentication"):
        pair.server.next_event()
    assert pair.server.state == State.ERROR
    # nothing after it is ever taken, not even the right next frame
    pair.server.receive_data(frames_[1])
    assert pair.server.next_event() == ConnectionClosed()


@pytest.mark.parametrize("suite", [AES_GCM, HMAC_SHA256])
def test_frames_in_order_pass_whole_and_bytewise(suite: str) -> None:
    pair = connected(client_macs=(suite,))
    for chunker in (chunks_whole, chunks_bytewise):
        data = b"".join(pair.client.send(m) for m in MESSAGES)
        assert feed(pair.server, data, chunker) == MESSAGES


def test_suites_offered_and_chosen() -> None:
    assert connected().client.suite == AES_GCM  # long-lived nodes: the fast one first
    lean = connected(client_macs=frameauth.LEAN_SUITES)  # as, ah: builtin SHA-256 only
    assert lean.client.suite == lean.server.suite == HMAC_SHA256
    picky = connected(client_macs=(HMAC_SHA256, AES_GCM), server_macs=(AES_GCM, HMAC_SHA256))
    assert picky.server.suite == HMAC_SHA256  # the client's order decides
    none = Pair(client_macs=(AES_GCM,), server_macs=(HMAC_SHA256,)).handshake()
    [failed] = none.server_events
    assert failed.code == REFUSE_NO_SUITE
    assert none.client_events[0].code == REFUSE_NO_SUITE and none.client_events[0].by_peer
    with pytest.raises(LocalProtocolError):
        Connection(Role.CLIENT, CLIENT, COOKIE, macs=("rot13",))


def _edit_hello(**fields: Any) -> Callable[[bytes], bytes]:
    def tamper(data: bytes) -> bytes:
        return b"".join(
            encode_frame(dict(obj, **fields) if obj.get("t") == "hello" else obj)
            for obj in frames(data)
        )

    return tamper


@pytest.mark.parametrize(
    "fields",
    [{"hidden": True}, {"macs": [HMAC_SHA256]}],
    ids=["hidden_flag", "downgraded_suites"],
)
def test_a_changed_hello_fails_the_proof(fields: dict[str, Any]) -> None:
    """A man in the middle that edits the hello (makes a node hidden, strips the
    fast suite) is caught: the proofs are made over the whole transcript."""
    pair = Pair(tamper_c2s=_edit_hello(**fields)).handshake()
    assert type(pair.server_events[-1]) is HandshakeFailed
    assert pair.server_events[-1].code == REFUSE_COOKIE
    assert pair.client.state == State.CLOSED


def test_a_changed_suite_choice_fails_the_welcome() -> None:
    def tamper(data: bytes) -> bytes:
        return b"".join(
            encode_frame(dict(obj, mac=HMAC_SHA256) if obj.get("t") == "challenge" else obj)
            for obj in frames(data)
        )

    pair = Pair(tamper_s2c=tamper).handshake()
    assert pair.server_events[-1].code == REFUSE_COOKIE
    assert pair.client_events[-1].code == REFUSE_COOKIE


def test_a_suite_not_offered_is_a_remote_error() -> None:
    client = Connection(Role.CLIENT, CLIENT, COOKIE, macs=(HMAC_SHA256,))
    client.initiate()
    client.data_to_send()
    challenge = {
        "t": "challenge",
        "v": VERSION,
        "name": SERVER,
        "challenge": os.urandom(CHALLENGE_BYTES),
        "mac": AES_GCM,
    }
    client.receive_data(encode_frame(challenge))
    with pytest.raises(RemoteProtocolError, match="not offered"):
        client.next_event()
    assert client.data_to_send() == b""  # no proof


@pytest.mark.parametrize("mode", FEEDERS)
def test_client_refuses_a_node_it_did_not_ask_for(mode: str) -> None:
    """The client asked for x@host and s@host answered: refused before the proof."""
    pair = Pair(expect="x@host", chunker=FEEDERS[mode]).handshake()
    [failed] = pair.client_events
    assert failed == HandshakeFailed(
        "s@host answered where x@host was asked for", by_peer=False, code=REFUSE_WRONG_NODE
    )
    assert pair.client.state == State.CLOSED
    assert [f["t"] for f in frames(pair.c2s)] == ["hello", "refuse"]  # no proof
    assert pair.server_events[-1] == HandshakeFailed(
        "s@host answered where x@host was asked for", by_peer=True, code=REFUSE_WRONG_NODE
    )
    assert pair.server.state == State.CLOSED
    assert connected(expect=SERVER).client.peer == SERVER


def test_a_client_refusal_before_a_challenge_is_an_error() -> None:
    server = _server_fed(encode_frame({"t": "refuse", "reason": "early"}))
    with pytest.raises(RemoteProtocolError, match="unexpected"):
        server.next_event()


# ---- a peer that holds a link already ---------------------------------------------------


def _accept_linked(conn: Connection, event: Any) -> Any:
    if type(event) is PeerHello:
        conn.accept(linked=True)
    return None


def test_a_linked_server_lets_the_client_decide_and_proceed() -> None:
    pair = Pair(decide=_accept_linked)
    pair.client.initiate()
    pair._to_server(pair.client.data_to_send())
    pair._to_client(pair.server.data_to_send())
    assert pair.client_events == [PeerLinked(SERVER)]
    assert pair.client.data_to_send() == b""  # no proof until the driver decides
    pair.client.proceed()
    pair.handshake_rest()
    assert pair.server_events[-1] == HandshakeDone(CLIENT, False)
    assert pair.client_events[-1] == HandshakeDone(SERVER, False)
    assert pair.client.linked and pair.server.linked
    assert pair.c_to_s(Tick()) == [Tick()]


def test_a_client_that_holds_the_link_withdraws() -> None:
    pair = Pair(decide=_accept_linked)
    pair.client.initiate()
    pair._to_server(pair.client.data_to_send())
    pair._to_client(pair.server.data_to_send())
    failed = pair.client.refuse("holds a link already", protocol.REFUSE_LINKED)
    assert failed.code == protocol.REFUSE_LINKED and not failed.by_peer
    pair.handshake_rest()
    assert pair.server_events[-1] == HandshakeFailed(
        "holds a link already", by_peer=True, code=protocol.REFUSE_LINKED
    )
    assert [f["t"] for f in frames(pair.c2s)] == ["hello", "refuse"]


def test_a_flipped_linked_flag_fails_the_proof() -> None:
    def tamper(data: bytes) -> bytes:
        return b"".join(
            encode_frame(dict(obj, linked=False) if obj.get("t") == "challenge" else obj)
            for obj in frames(data)
        )

    pair = Pair(decide=_accept_linked, tamper_s2c=tamper).handshake()
    assert pair.server_events[-1].code == REFUSE_COOKIE


def test_proceed_answers_a_peer_linked_only() -> None:
    client = Connection(Role.CLIENT, CLIENT, COOKIE)
    with pytest.raises(LocalProtocolError):
        client.proceed()
    client.initiate()
    with pytest.raises(LocalProtocolError):
        client.proceed()
    assert connected().client.linked is False


def test_a_linked_flag_must_be_a_boolean() -> None:
    client = Connection(Role.CLIENT, CLIENT, COOKIE, macs=(HMAC_SHA256,))
    client.initiate()
    client.data_to_send()
    challenge = {
        "t": "challenge",
        "v": VERSION,
        "name": SERVER,
        "challenge": os.urandom(CHALLENGE_BYTES),
        "mac": HMAC_SHA256,
        "linked": 1,
    }
    client.receive_data(encode_frame(challenge))
    with pytest.raises(RemoteProtocolError, match="linked"):
        client.next_event()


@pytest.mark.parametrize("size", [10, protocol.LARGE_BODY, 100_000])
def test_send_parts_are_the_frame_in_pieces(size: int) -> None:
    """A large body leaves as [header, body, tag] (sendmsg, no copy); the peer
    reads the same frame either way."""
    a, b = connected(), connected()
    msg = Reply(1, b"x" * size)
    parts = a.client.send_parts(msg)
    assert len(parts) == (3 if size >= protocol.LARGE_BODY else 1)
    assert feed(a.server, b"".join(parts)) == [msg]
    assert feed(b.server, b.client.send(msg), chunks_whole) == [msg]


# ---- large frames: payload pieces out, read into the decoder's own buffer -----------


def _into(conn: Connection, data: bytes) -> None:
    """Deliver `data` as a driver that reads into the protocol's buffer does."""
    view = conn.receive_buffer(max(len(data), conn.bytes_wanted()))
    view[: len(data)] = data
    del view
    conn.received(len(data))


LARGE_SIZES = [protocol.LARGE_BODY, 65535 - 40, 65535, 65536, 100_000]


@pytest.mark.parametrize("suite", [AES_GCM, HMAC_SHA256])
@pytest.mark.parametrize("size", LARGE_SIZES)
def test_a_large_bytes_payload_is_its_own_piece_in_msgpacks_bytes(suite: str, size: int) -> None:
    """A large bytes payload goes out uncopied, as the middle piece of the frame,
    and the frame is the very bytes msgpack would have made (the wire is unchanged)."""
    pair = connected(client_macs=(suite,))
    payload = os.urandom(size)
    for msg, obj in (
        (Call(7, "b@host", "svc", "echo", payload), [K_CALL, 7, "b@host", "svc", "echo", payload]),
        (Reply(2**40, payload), [K_REPLY, 2**40, payload]),
    ):
        parts = pair.client.send_parts(msg)
        assert len(parts) == 3 and parts[1] is payload
        frame = b"".join(parts)
        body = msgpack.packb(obj, use_bin_type=True)
        assert frame[:4] == struct.pack(">I", len(body)) and frame[4:-TAG_BYTES] == body
        _into(pair.server, frame)
        assert drain(pair.server) == [msg]


@pytest.mark.parametrize("suite", [AES_GCM, HMAC_SHA256])
def test_a_large_frame_read_into_the_buffer_split_at_every_boundary(suite: str) -> None:
    """Read into the decoder's buffer in two reads cut anywhere, and in three: the
    frame is verified and decoded once whole, never before; what follows it
    stays for the next read."""
    pair = connected(client_macs=(suite,))
    msg = Reply(3, os.urandom(protocol.LARGE_BODY + 100))
    length = len(protocol.encode_frame([K_REPLY, 3, msg.value])) + TAG_BYTES
    stride = 1 if suite == AES_GCM else 13  # (SHA-256 in Python's C is slower: fewer cuts)
    cuts = sorted({*range(1, length, stride), *range(1, 40), *range(length - 40, length)})
    for cut in cuts:
        frame = pair.client.send(msg) + pair.client.send(Tick())
        _into(pair.server, frame[:cut])
        assert drain(pair.server) == []
        _into(pair.server, frame[cut:length])
        assert drain(pair.server) == [msg]
        _into(pair.server, frame[length:])
        assert drain(pair.server) == [Tick()]
    for cut in range(1, length - 1, 997):  # three reads, the last glued to a tick
        frame = pair.client.send(msg) + pair.client.send(Tick())
        _into(pair.server, frame[:cut])
        _into(pair.server, frame[cut : cut + 1])
        assert drain(pair.server) == []
        _into(pair.server, frame[cut + 1 :])
        assert drain(pair.server) == [msg, Tick()]


@pytest.mark.parametrize("suite", [AES_GCM, HMAC_SHA256])
@pytest.mark.parametrize("where", ["length", "header", "payload", "last_byte", "tag"])
def test_a_tampered_large_frame_is_refused_before_it_is_decoded(suite: str, where: str) -> None:
    pair = connected(client_macs=(suite,))
    frame = bytearray(pair.client.send(Call(1, None, "svc", "m", os.urandom(100_000))))
    at = {"length": 3, "header": 6, "payload": 50_000, "last_byte": -TAG_BYTES - 1, "tag": -1}
    frame[at[where]] ^= 1 if where != "length" else 0x20  # (a length: shorter by 32 bytes)
    _into(pair.server, bytes(frame))
    with pytest.raises(RemoteProtocolError, match="authentication"):
        pair.server.next_event()
    assert pair.server.state == State.ERROR


def test_a_frame_larger_than_the_buffer_grows_it_and_a_huge_one_is_let_go() -> None:
    pair = connected()
    for size in (200_000, protocol.KEEP_BUFFER + 10, 20):
        msg = Reply(1, b"z" * size)
        frame = pair.client.send(msg)
        _into(pair.server, frame[:10])  # (the length is known: the buffer grows to it)
        assert pair.server.bytes_wanted() == len(frame) - 10
        _into(pair.server, frame[10:])
        assert drain(pair.server) == [msg]
        kept = pair.server._decoder._own
        assert kept is not None if size < protocol.KEEP_BUFFER else kept is None


def test_bytes_fed_and_bytes_read_into_the_buffer_mix() -> None:
    pair = connected()
    data = b"".join(pair.client.send(m) for m in MESSAGES)
    got: list[Any] = []
    for i, start in enumerate(range(0, len(data), 37)):
        chunk = data[start : start + 37]
        if i % 2:
            pair.server.receive_data(chunk)
        else:
            _into(pair.server, chunk)
        got += drain(pair.server)
    assert got == MESSAGES
