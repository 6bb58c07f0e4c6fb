"""The distribution protocol as a sans-IO core: bytes in, events out.

Nothing here touches a socket or a clock. A driver feeds received bytes with
`receive_data` (b"" for end of file), pulls events with `next_event` until it
returns NEED_DATA, writes out `data_to_send()` after the handshake steps and the
bytes returned by `send(event)` afterwards. The trio driver (node.py) and the
blocking driver (blocking.py) share this one object.

Wire format: every frame is a 4-byte big-endian length and a msgpack body. The
handshake frames are small maps and limited to HANDSHAKE_MAX_FRAME bytes; after it,
frames are lists `[kind, ...]` limited to the connection's `max_frame`, each
followed by a 16-byte tag (frameauth.py) over its body and its sequence number,
with a key of its direction derived from the handshake. A frame whose tag does
not check (injected, replayed, reordered, one missing) is a RemoteProtocolError.

Handshake (client C connects to server S), each side proving the cookie without
sending it, over the other's fresh challenge, both names and everything else
either side said (T, the transcript: version, names, challenges, hidden, the
suites offered and the one chosen):

    C -> S  hello     {v, name, hidden, challenge_c, macs: [suite, ...]}
    S -> C  challenge {v, name, challenge_s, mac, linked}   or refuse {reason, code}
    C -> S  proof     {digest: HMAC(cookie, "c" | T)}  or refuse (not the node asked
                                                          for; or linked already)
    S -> C  welcome   {digest: HMAC(cookie, "s" | T)}  or refuse (wrong cookie)

The server decides whether to take the peer (name clash, name kinds, a dial of
its own under way) between hello and challenge: `next_event` hands it a PeerHello
and the driver answers with `accept(linked)` or `refuse(reason)`. `linked` tells
the client that the server holds a link to it already; the client then gets a
PeerLinked and answers `proceed()` (that link is stale to it: the server replaces
it once the cookie is proved) or `refuse(reason, REFUSE_LINKED)` (it has the link
too). A client told the node it expects (`peer=`) refuses any other before
proving anything. A peer of another protocol version is refused in words it can
show (its hello still parses). Deadlines are the driver's business.

Messages after the handshake, and their events:

    [1, req_id, node, target, method, args]   Call
    [2, req_id, value]                        Reply
    [3, req_id, kind, message]                ErrorReply
    [4, node, target, method, args]           Cast
    [5, req_id]                               Cancel
    [6]                                       Tick
    [7, "names", [[name, stamp], ...]]        NamesHeld      (the global registry,
    [7, "add", [name, stamp]]                 NameClaimed     checked here: a driver
    [7, "remove", name]                       NameReleased    sees well-formed names
    [7, "sync", token] / [7, "sync_ack", token]  SyncRequest / SyncAck    and stamps)
    [7, "bye", None]                          Goodbye
    [8, [node, ...]]                          Peers

A malformed message is a RemoteProtocolError (the link ends); a registry
operation this version does not know is skipped.
"""

from __future__ import annotations

import os
from _struct import Struct  # struct.py only re-exports _struct: a module less for as

from . import names
from .errors import LocalProtocolError, RemoteProtocolError
from .frameauth import SUITES, TAG_BYTES, FrameMac, derive_keys, hmac_sha256
from .lean import codec, compare_digest

# msgpack, or for `as` and `ah` its pure-Python twin (lean.py says why):
# _packb(obj) with use_bin_type, _unpackb(data) with raw=False, strict_map_key.
_packb, _unpackb = codec()

TYPE_CHECKING = False  # typing itself is not imported: `as` and `ah` start faster without it
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from typing_extensions import dataclass_transform
else:

    def dataclass_transform(**kwargs: object) -> object:
        """For the type checker only: the events are typed like frozen dataclasses."""
        return lambda cls: cls


VERSION = 2  # 2: authenticated frames, the suites in the hello, the transcript in the proofs
HANDSHAKE_MAX_FRAME = 1024
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
CHALLENGE_BYTES = 32
LARGE_BODY = 16384  # from this size a frame goes out in pieces (send_parts)
MIN_BUFFER = 65536 + 4096  # a decoder's own receive buffer: a 64 KB message whole
KEEP_BUFFER = 1 << 20  # a larger one is let go once its frames are decoded
MAX_REASON_BYTES = 400

_LEN = Struct(">I")
_BIN16 = Struct(">BH")  # msgpack's bin 16 and bin 32 headers: 0xc5, 0xc6
_BIN32 = Struct(">BI")

# Why a handshake was refused, for programs; the reason in words goes beside it.
REFUSE_COOKIE = "cookie"
REFUSE_NAME_IN_USE = "name_in_use"
REFUSE_SIMULTANEOUS = "simultaneous"
REFUSE_MIXED_NAMES = "mixed_names"
REFUSE_VERSION = "version"
REFUSE_NO_SUITE = "no_common_suite"
REFUSE_WRONG_NODE = "wrong_node"
REFUSE_LINKED = "linked"
REFUSE_OTHER = "refused"
MAX_SUITES = 8

# Message kinds after the handshake (first element of every frame list).
K_CALL, K_REPLY, K_ERROR, K_CAST, K_CANCEL, K_TICK, K_REGISTRY, K_PEERS = range(1, 9)

# The operations of K_REGISTRY frames: [K_REGISTRY, op, data].
OP_NAMES, OP_ADD, OP_REMOVE, OP_SYNC, OP_SYNC_ACK, OP_BYE = (
    "names",
    "add",
    "remove",
    "sync",
    "sync_ack",
    "bye",
)


class Role:
    CLIENT = "client"
    SERVER = "server"


class State:
    HANDSHAKE = "handshake"
    CONNECTED = "connected"
    CLOSED = "closed"
    ERROR = "error"


class NeedData:
    """The type of NEED_DATA: `next_event` has no whole frame yet."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass_transform(frozen_default=True, eq_default=True)
class _Event:
    """Immutable, slotted, compared by value: a frozen dataclass without the
    import cost of dataclasses (this module is on `as`'s start-up path).

    Fields are the `__slots__`, in order; their annotations are for the type
    checker (strings at run time, so they cost nothing).
    """

    __slots__ = ()
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields: tuple[str, ...] = self.__slots__
        if not kwargs and len(args) == len(fields):  # the hot path
            for name, value in zip(fields, args, strict=False):
                object.__setattr__(self, name, value)
            return
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(fields)} fields")
        values = dict(zip(fields, args, strict=False))
        values.update(kwargs)
        for name in fields:
            if name in values:
                value = values.pop(name)
            elif name in self._defaults:
                value = self._defaults[name]
            else:
                raise TypeError(f"{type(self).__name__} needs {name}")
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"{type(self).__name__} has no field {next(iter(values))}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple[Any, ...]:
        fields: tuple[str, ...] = self.__slots__
        return tuple(getattr(self, f) for f in fields)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._values() == self._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        fields: tuple[str, ...] = self.__slots__
        inner = ", ".join(f"{f}={getattr(self, f)!r}" for f in fields)
        return f"{type(self).__name__}({inner})"


# ---- events: the handshake ----------------------------------------------------


class PeerHello(_Event):
    """Server side: a peer says who it is; answer with accept() or refuse()."""

    __slots__ = ("peer", "hidden")
    peer: str
    hidden: bool


class PeerLinked(_Event):
    """Client side: the server holds a link to us already. Answer with proceed()
    (it is stale: the new link replaces it) or refuse(reason, REFUSE_LINKED)."""

    __slots__ = ("peer",)
    peer: str


class HandshakeDone(_Event):
    __slots__ = ("peer", "hidden")
    peer: str
    hidden: bool


class HandshakeFailed(_Event):
    """The handshake ended in a refusal: `by_peer` tells who refused.

    `code` is for programs (one of the REFUSE_* constants), `reason` for people.
    """

    __slots__ = ("reason", "by_peer", "code")
    _defaults = {"code": REFUSE_OTHER}
    reason: str
    by_peer: bool
    if TYPE_CHECKING:
        code: str = REFUSE_OTHER


# ---- events: calls ------------------------------------------------------------


_set = object.__setattr__  # (the events of every call have their __init__ written out)


class Call(_Event):
    """A request. `node` None means `target` is a global name; else a local name there."""

    __slots__ = ("req_id", "node", "target", "method", "args")
    req_id: int
    node: str | None
    target: str
    method: str
    args: Any

    def __init__(self, req_id: int, node: str | None, target: str, method: str, args: Any) -> None:
        _set(self, "req_id", req_id)
        _set(self, "node", node)
        _set(self, "target", target)
        _set(self, "method", method)
        _set(self, "args", args)


class Reply(_Event):
    __slots__ = ("req_id", "value")
    req_id: int
    value: Any

    def __init__(self, req_id: int, value: Any) -> None:
        _set(self, "req_id", req_id)
        _set(self, "value", value)


class ErrorReply(_Event):
    """A typed failure: `kind` one of no_such_name, node_down, timeout or a service kind."""

    __slots__ = ("req_id", "kind", "message")
    req_id: int
    kind: str
    message: str

    def __init__(self, req_id: int, kind: str, message: str) -> None:
        _set(self, "req_id", req_id)
        _set(self, "kind", kind)
        _set(self, "message", message)


class Cast(_Event):
    __slots__ = ("node", "target", "method", "args")
    node: str | None
    target: str
    method: str
    args: Any


class Cancel(_Event):
    """The caller gave up on req_id: the handler should be cancelled."""

    __slots__ = ("req_id",)
    req_id: int


class Tick(_Event):
    """Heartbeat: proves the peer is alive when nothing else is said."""

    __slots__ = ()


# ---- events: the global registry and the mesh ---------------------------------------
# On the wire all are K_REGISTRY frames [K_REGISTRY, op, data]; the core checks
# their shapes, so that a driver only ever sees well-formed names and stamps.


class NamesHeld(_Event):
    """The sender's own global names with their claim stamps (sent on connect);
    they replace whatever the receiver knew of the sender's claims."""

    __slots__ = ("entries",)
    entries: list[tuple[str, float]]


class NameClaimed(_Event):
    """The sender claims a global name, at time `stamp` (the older claim wins)."""

    __slots__ = ("name", "stamp")
    name: str
    stamp: float


class NameReleased(_Event):
    """The sender gives up its claim on a global name."""

    __slots__ = ("name",)
    name: str


class SyncRequest(_Event):
    """Answer with SyncAck(token) once everything received before it is applied."""

    __slots__ = ("token",)
    token: int


class SyncAck(_Event):
    __slots__ = ("token",)
    token: int


class Goodbye(_Event):
    """The sender stops cleanly: do not dial it again when its link closes."""

    __slots__ = ()


class Peers(_Event):
    """The sender's long-lived peers, so that the receiver completes the mesh."""

    __slots__ = ("nodes",)
    nodes: list[str]


class ConnectionClosed(_Event):
    """The peer closed the connection cleanly (between frames)."""

    __slots__ = ()


Event = (
    PeerHello
    | PeerLinked
    | HandshakeDone
    | HandshakeFailed
    | Call
    | Reply
    | ErrorReply
    | Cast
    | Cancel
    | Tick
    | NamesHeld
    | NameClaimed
    | NameReleased
    | SyncRequest
    | SyncAck
    | Goodbye
    | Peers
    | ConnectionClosed
)

TICK = Tick()


def transcript(
    client: str,
    server: str,
    challenge_c: bytes,
    challenge_s: bytes,
    hidden: bool,
    offered: list[str],
    chosen: str,
    linked: bool = False,
) -> bytes:
    """Everything both sides said in a handshake, in one unambiguous byte string
    (msgpack of a list): the proofs and the link's keys are made over it, so that
    nothing a man in the middle changes goes unnoticed."""
    packed: bytes = _packb(
        [VERSION, client, server, challenge_c, challenge_s, hidden, offered, chosen, linked]
    )
    return packed


def encode_frame(obj: Any) -> bytes:
    """One frame without a tag (handshake, portmapper): length prefix and msgpack body."""
    body: bytes = _packb(obj)
    return _LEN.pack(len(body)) + body


class FrameDecoder:
    """Splits a byte stream into msgpack frames, enforcing a size limit per frame.

    Two ways in, both without copying a whole frame that arrives in one read:
    `feed` keeps bytes fed while nothing is pending as they are; `buffer` and
    `filled` let a driver read straight into the decoder's own buffer (recv_into),
    reused from read to read, so that a large frame costs no allocation (a fresh
    64 KB each read made the heap grow and shrink: page faults costing more than
    the copy). Frames are decoded where they lie; msgpack copies what it returns."""

    def __init__(self, max_frame: int) -> None:
        self.max_frame = max_frame
        self._buf: bytes | bytearray = b""
        self._pos = 0  # the first byte not decoded yet
        self._end = 0  # the end of what was received (_buf may be longer: free room)
        self._own: bytearray | None = None  # our buffer, kept while _buf is fed bytes
        self._mac: FrameMac | None = None
        self._tag = 0
        self.eof = False

    def authenticate(self, mac: FrameMac) -> None:
        """From the next frame on, each is followed by a tag that `mac` must verify."""
        self._mac = mac
        self._tag = TAG_BYTES

    def feed(self, data: bytes | bytearray) -> None:
        size = len(data)
        if not size:
            self.eof = True
        elif self._pos == self._end and type(data) is bytes:
            self._buf, self._pos, self._end = data, 0, size  # nothing pending: as it is
        else:
            self.buffer(size)[:size] = data
            self._end += size

    def buffer(self, size: int) -> memoryview:
        """A writable view of at least `size` free bytes after those pending, for a
        driver to read into; it then tells `filled` how many it wrote. Do not keep
        the view past that."""
        buf, pos, end = self._buf, self._pos, self._end
        if type(buf) is bytearray and len(buf) - end >= size:
            return memoryview(buf)[end:]
        pending = end - pos
        own = self._own
        if own is None or len(own) < pending + size:
            own = self._own = bytearray(max(pending + size, MIN_BUFFER))
        if pending:  # (a part of one frame: moved to the front)
            own[:pending] = buf[pos:end]
        self._buf, self._pos, self._end = own, 0, pending
        return memoryview(own)[pending:]

    def room(self, least: int) -> memoryview:
        """buffer() for the next read: at least `least` bytes, and the whole rest
        of the frame being received if that is more (a large frame in one read)."""
        avail = self._end - self._pos
        if avail >= 4:
            length: int = _LEN.unpack_from(self._buf, self._pos)[0]
            missing = min(length, self.max_frame) + 4 + self._tag - avail
            if missing > least:
                least = missing
        buf, end = self._buf, self._end
        if type(buf) is bytearray and len(buf) - end >= least:  # (buffer()'s common case)
            return memoryview(buf)[end:]
        return self.buffer(least)

    def filled(self, count: int) -> None:
        """`count` bytes were written at the start of the last `buffer`; 0 is end of file."""
        if count:
            self._end += count
        else:
            self.eof = True

    def wanted(self) -> int:
        """Bytes still missing from the frame being received (0 if none is started):
        lets a driver read a large frame in one go."""
        avail = self._end - self._pos
        if avail < 4:
            return 0
        length: int = _LEN.unpack_from(self._buf, self._pos)[0]
        return max(0, min(length, self.max_frame) + 4 + self._tag - avail)

    def next_frame(self) -> Any:
        """Return the next decoded object, NEED_DATA, or raise RemoteProtocolError.

        At end of file with nothing buffered, returns ConnectionClosed.
        """
        buf, pos = self._buf, self._pos
        avail = self._end - pos
        if avail >= 4:
            (length,) = _LEN.unpack_from(buf, pos)
            if length > self.max_frame:
                raise RemoteProtocolError(
                    f"frame of {length} bytes exceeds the limit of {self.max_frame}"
                )
            if avail >= 4 + length + self._tag:
                start = pos + 4
                end = start + length
                # (No memoryview is kept in a local: one alive would pin the buffer.)
                if self._mac is not None:
                    if not self._mac.verify(
                        memoryview(buf)[start:end], memoryview(buf)[end : end + self._tag]
                    ):
                        raise RemoteProtocolError(
                            "a frame failed its authentication (injected, replayed, "
                            "reordered, or one is missing)"
                        )
                    end += self._tag
                try:
                    obj = _unpackb(memoryview(buf)[start : end - self._tag])
                except Exception as exc:
                    raise RemoteProtocolError(f"undecodable frame: {exc}") from exc
                if end == self._end:  # all decoded: the buffer is free again
                    self._pos = self._end = 0
                    if type(buf) is bytes:
                        self._buf = b""
                    elif len(buf) > KEEP_BUFFER:  # (not one huge frame's worth for good)
                        self._buf, self._own = b"", None
                else:
                    self._pos = end
                return obj
        if self.eof:
            if avail:
                raise RemoteProtocolError("connection closed in the middle of a frame")
            return ConnectionClosed()
        return NEED_DATA


class Connection:
    """One end of one node link, from first byte to close."""

    def __init__(
        self,
        role: str,
        our_name: str,
        cookie: bytes,
        *,
        hidden: bool = False,
        max_frame: int = DEFAULT_MAX_FRAME,
        macs: tuple[str, ...] = SUITES,
        peer: str | None = None,
    ) -> None:
        """`macs`: the frame authentication suites a client offers (best first), or a
        server takes. `peer`: for a client, the node it means to reach; any other
        that answers is refused (REFUSE_WRONG_NODE) before the proof."""
        names.split(our_name)
        if not cookie:
            raise LocalProtocolError("the cookie must not be empty")
        if not macs or not all(m in SUITES for m in macs):
            raise LocalProtocolError(f"frame authentication suites must be some of {SUITES}")
        self.role = role
        self.our_name = our_name
        self.hidden = hidden
        self.expected = peer
        self.peer: str | None = None
        self.peer_hidden = False
        self.suite = ""  # the frame authentication suite, once chosen
        self.linked = False  # the server said it holds a link to the client already
        self.state = State.HANDSHAKE
        self._cookie = cookie
        self._max_frame = max_frame
        self._macs = macs
        self._offered: list[str] = list(macs)  # the client's offer (the server learns it)
        # The reading side, which a driver may use directly (buffer, filled,
        # wanted: one call less per read than receive_buffer, received, bytes_wanted).
        self.decoder = self._decoder = FrameDecoder(HANDSHAKE_MAX_FRAME)
        self._outbox = bytearray()
        self._challenge = os.urandom(CHALLENGE_BYTES)
        self._peer_challenge = b""
        self._send_mac: FrameMac | None = None
        # Handshake steps; each value is what we wait for next.
        self._step = "hello" if role is Role.SERVER else "not_started"

    # ---- outgoing ---------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes produced by handshake steps; empty when there are none."""
        out = bytes(self._outbox)
        self._outbox.clear()
        return out

    def initiate(self) -> None:
        """Client: queue the hello."""
        if self.role is not Role.CLIENT or self._step != "not_started":
            raise LocalProtocolError("initiate() is for a client, once")
        self._put(
            {
                "t": "hello",
                "v": VERSION,
                "name": self.our_name,
                "hidden": self.hidden,
                "challenge": self._challenge,
                "macs": self._offered,
            }
        )
        self._step = "challenge"

    def accept(self, linked: bool = False) -> None:
        """Server: take the peer announced by PeerHello; the cookie check follows.
        `linked`: we hold a link to that peer already (it may replace it)."""
        if self._step != "decide":
            raise LocalProtocolError("accept() only answers a PeerHello")
        self.linked = linked
        self._put(
            {
                "t": "challenge",
                "v": VERSION,
                "name": self.our_name,
                "challenge": self._challenge,
                "mac": self.suite,
                "linked": linked,
            }
        )
        self._step = "proof"

    def proceed(self) -> None:
        """Client: answer PeerLinked by going on (our link to the peer is gone)."""
        if self._step != "prove" or self.state is not State.HANDSHAKE:
            raise LocalProtocolError("proceed() only answers a PeerLinked")
        self._prove()

    def refuse(self, reason: str, code: str = REFUSE_OTHER) -> HandshakeFailed:
        """Turn the peer away with a reason it will show its user: a server before
        its challenge, a client before its proof."""
        if self.state is not State.HANDSHAKE or self._step not in _REFUSING[self.role]:
            raise LocalProtocolError("refuse() answers a hello, a proof or a challenge")
        # Bounded in bytes, not characters: the frame must fit HANDSHAKE_MAX_FRAME.
        short = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
        self._put({"t": "refuse", "reason": short, "code": code[:32]})
        self.state = State.CLOSED
        self._step = "done"
        return HandshakeFailed(reason, by_peer=False, code=code)

    def send(self, event: Event) -> bytes:
        """Bytes for one message after the handshake, tagged with the next sequence
        number: they must go out before those of any later send()."""
        parts = self.send_parts(event)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def send_parts(self, event: Event) -> list[bytes]:
        """send(), as pieces to write in order (a large body is not copied into one
        frame: the driver hands the pieces to the kernel with sendmsg)."""
        if self.state is not State.CONNECTED:
            raise LocalProtocolError(f"cannot send {type(event).__name__} in state {self.state}")
        obj: list[Any]
        if type(event) is Call:
            return self.send_call(event.req_id, event.node, event.target, event.method, event.args)
        if type(event) is Reply:
            return self.send_reply(event.req_id, event.value)
        if type(event) is ErrorReply:
            obj = [K_ERROR, event.req_id, event.kind, event.message]
        elif type(event) is Cast:
            obj = [K_CAST, event.node, event.target, event.method, event.args]
        elif type(event) is Tick:
            obj = [K_TICK]
        elif type(event) is Cancel:
            obj = [K_CANCEL, event.req_id]
        elif type(event) is Peers:
            obj = [K_PEERS, list(event.nodes)]
        elif type(event) is NamesHeld:
            obj = [K_REGISTRY, OP_NAMES, [[n, s] for n, s in event.entries]]
        elif type(event) is NameClaimed:
            obj = [K_REGISTRY, OP_ADD, [event.name, event.stamp]]
        elif type(event) is NameReleased:
            obj = [K_REGISTRY, OP_REMOVE, event.name]
        elif type(event) is SyncRequest:
            obj = [K_REGISTRY, OP_SYNC, event.token]
        elif type(event) is SyncAck:
            obj = [K_REGISTRY, OP_SYNC_ACK, event.token]
        elif type(event) is Goodbye:
            obj = [K_REGISTRY, OP_BYE, None]
        else:
            raise LocalProtocolError(f"{type(event).__name__} is not a message")
        _check_keys(obj)
        return self._frame_parts(obj, type(event).__name__)

    def send_call(
        self, req_id: int, node: str | None, target: str, method: str, args: Any
    ) -> list[bytes]:
        """send_parts(Call(...)) without the event: the hot path of every call
        (each Python frame saved counts there; the same bytes)."""
        if self.state is not State.CONNECTED:
            raise LocalProtocolError(f"cannot send Call in state {self.state}")
        if isinstance(args, _CONTAINERS):  # (only the payload can hold a map)
            _check_keys(args)
        elif type(args) is bytes and len(args) >= LARGE_BODY:
            return self._large_parts([K_CALL, req_id, node, target, method], args, "Call")
        return self._frame_parts([K_CALL, req_id, node, target, method, args], "Call")

    def send_reply(self, req_id: int, value: Any) -> list[bytes]:
        """send_parts(Reply(req_id, value)) without the event (see send_call)."""
        if self.state is not State.CONNECTED:
            raise LocalProtocolError(f"cannot send Reply in state {self.state}")
        if isinstance(value, _CONTAINERS):
            _check_keys(value)
        elif type(value) is bytes and len(value) >= LARGE_BODY:
            return self._large_parts([K_REPLY, req_id], value, "Reply")
        return self._frame_parts([K_REPLY, req_id, value], "Reply")

    def _frame_parts(self, obj: Any, what: str) -> list[bytes]:
        """`obj` as a tagged frame, in pieces: a body under LARGE_BODY as one
        (length, body and tag together: the common case, written out here)."""
        try:
            body: bytes = _packb(obj)
        except (TypeError, ValueError, OverflowError) as exc:
            raise LocalProtocolError(f"cannot encode {what}: {exc}") from exc
        size = len(body)
        if size > self._max_frame:
            raise LocalProtocolError(
                f"{what} of {size} bytes exceeds the frame limit of {self._max_frame}"
            )
        if size >= LARGE_BODY:
            return self._seal_parts(body)
        assert self._send_mac is not None
        return [_LEN.pack(size) + body + self._send_mac.sign(body)]

    def _frame(self, obj: Any, what: str = "message") -> bytes:
        """`obj` as one tagged frame (tests use it to send malformed messages)."""
        return b"".join(self._frame_parts(obj, what))

    def _large_parts(self, head: list[Any], payload: bytes, what: str) -> list[bytes]:
        """The frame of the list `head + [payload]`, `payload` a large bytes: the
        same bytes as _frame_parts makes, but the payload is neither copied into
        a packed body (msgpack's buffer for that cost page faults at 64 KB) nor
        into a frame: it goes to the kernel as its own piece."""
        size = len(payload)
        try:
            packed: bytes = _packb(head)  # (a fixarray of fewer than 15: one byte of header)
        except (TypeError, ValueError, OverflowError) as exc:
            raise LocalProtocolError(f"cannot encode {what}: {exc}") from exc
        array = bytes((packed[0] + 1,))  # one more element: the payload
        if size < 65536:
            prefix = array + packed[1:] + _BIN16.pack(0xC5, size)
        else:
            prefix = array + packed[1:] + _BIN32.pack(0xC6, size)
        body_size = len(prefix) + size
        if body_size > self._max_frame:
            raise LocalProtocolError(
                f"{what} of {body_size} bytes exceeds the frame limit of {self._max_frame}"
            )
        assert self._send_mac is not None
        tag = self._send_mac.sign_joined(prefix, payload)
        return [_LEN.pack(body_size) + prefix, payload, tag]

    def _seal(self, body: bytes) -> bytes:
        """A frame of `body` with its tag: the sequence number moves on."""
        return b"".join(self._seal_parts(body))

    def _seal_parts(self, body: bytes) -> list[bytes]:
        assert self._send_mac is not None
        size = len(body)
        if size < LARGE_BODY:
            return [_LEN.pack(size) + body + self._send_mac.sign(body)]
        return [_LEN.pack(size), body, self._send_mac.sign(body)]

    def _put(self, obj: dict[str, Any]) -> None:
        self._outbox += encode_frame(obj)

    # ---- incoming ---------------------------------------------------------

    def receive_data(self, data: bytes | bytearray) -> None:
        """Feed bytes from the peer; b"" means end of file."""
        self._decoder.feed(data)

    def receive_buffer(self, size: int) -> memoryview:
        """Room for at least `size` bytes from the peer, to read into (no copy, no
        allocation per read); then `received(count)`. Instead of receive_data."""
        return self._decoder.buffer(size)

    def received(self, count: int) -> None:
        """`count` bytes were read into the last receive_buffer(); 0 means end of file."""
        self._decoder.filled(count)

    def bytes_wanted(self) -> int:
        return self._decoder.wanted()

    def next_event(self) -> Event | NeedData:
        """The next event, or NEED_DATA. Raises RemoteProtocolError on bad input."""
        if self.state in (State.CLOSED, State.ERROR):
            return ConnectionClosed()
        decoder = self._decoder
        if decoder._end - decoder._pos < 4 and not decoder.eof:
            return NEED_DATA  # (not even a frame's length: the answer after each read's last)
        try:
            while True:
                obj = decoder.next_frame()
                if type(obj) is NeedData:  # (`is NEED_DATA` would make NEED_DATA Any to mypy)
                    return NEED_DATA
                if type(obj) is ConnectionClosed:
                    if self.state is State.HANDSHAKE:
                        raise RemoteProtocolError(
                            "the peer closed the connection during the handshake"
                        )
                    self.state = State.CLOSED
                    closed: ConnectionClosed = obj
                    return closed
                if self.state is State.HANDSHAKE:
                    return self._handshake(obj)
                # The messages of every call, well-formed, decoded here; the rest,
                # and every malformed message's error, in _message.
                if type(obj) is list:
                    n = len(obj)
                    if n == 3 and obj[0] == K_REPLY and type(obj[1]) is int and obj[1] >= 0:
                        return Reply(obj[1], obj[2])
                    if n == 6 and obj[0] == K_CALL:
                        _, req_id, node, target, method, args = obj
                        if (
                            type(req_id) is int
                            and req_id >= 0
                            and (node is None or type(node) is str)
                            and type(target) is str
                            and type(method) is str
                        ):
                            return Call(req_id, node, target, method, args)
                event = self._message(obj)
                if event is not None:
                    return event
        except RemoteProtocolError:
            self.state = State.ERROR
            raise

    def _message(self, obj: Any) -> Event | None:
        if type(obj) is not list or not obj:
            raise RemoteProtocolError("a message must be a non-empty list")
        kind = obj[0]
        n = len(obj)
        try:
            if kind == K_CALL and n == 6:
                _, req_id, node, target, method, args = obj
                _check_call(req_id, node, target, method)
                return Call(req_id, node, target, method, args)
            if kind == K_REPLY and n == 3:
                _check_id(obj[1])
                return Reply(obj[1], obj[2])
            if kind == K_ERROR and n == 4:
                _check_id(obj[1])
                if type(obj[2]) is not str or type(obj[3]) is not str:
                    raise RemoteProtocolError("an error reply carries a kind and a message")
                return ErrorReply(obj[1], obj[2], obj[3])
            if kind == K_CAST and n == 5:
                _, node, target, method, args = obj
                _check_call(0, node, target, method)
                return Cast(node, target, method, args)
            if kind == K_TICK and n == 1:
                return TICK
            if kind == K_CANCEL and n == 2:
                _check_id(obj[1])
                return Cancel(obj[1])
            if kind == K_REGISTRY and n == 3 and type(obj[1]) is str:
                return _registry(obj[1], obj[2])
            if kind == K_PEERS and n == 2 and type(obj[1]) is list:
                if not all(type(x) is str for x in obj[1]):
                    raise RemoteProtocolError("peers must be node names")
                return Peers(obj[1])
        except TypeError as exc:  # unhashable or odd shapes
            raise RemoteProtocolError(f"malformed message: {exc}") from exc
        raise RemoteProtocolError(f"unknown message kind {kind!r} with {n} fields")

    def _handshake(self, obj: Any) -> Event:
        if type(obj) is not dict or type(obj.get("t")) is not str:
            raise RemoteProtocolError("garbage during the handshake")
        t = obj["t"]
        # A refusal ends the handshake: a client's answer to a hello, or a server's
        # to a challenge (the client did not find the node it asked for).
        if t == "refuse" and self._step in ("challenge", "welcome", "proof"):
            self.state = State.CLOSED
            self._step = "done"
            return HandshakeFailed(
                str(obj.get("reason", "refused"))[:MAX_REASON_BYTES],
                by_peer=True,
                code=str(obj.get("code", REFUSE_OTHER))[:32],
            )
        expected = {
            "hello": "hello",
            "challenge": "challenge",
            "proof": "proof",
            "welcome": "welcome",
        }.get(self._step)
        if t != expected:
            raise RemoteProtocolError(f"unexpected {t!r} during the handshake")
        if t == "hello":
            return self._on_hello(obj)
        if t == "challenge":
            return self._on_challenge(obj)
        if t == "proof":
            return self._on_proof(obj)
        return self._on_welcome(obj)

    def _peer_fields(self, obj: dict[str, Any]) -> str:
        if obj.get("v") != VERSION:
            raise RemoteProtocolError(
                f"protocol version {obj.get('v')!r} is not supported (this node speaks {VERSION})"
            )
        peer = obj.get("name")
        if type(peer) is not str:
            raise RemoteProtocolError("the peer sent no node name")
        try:
            names.split(peer)
        except names.BadNodeName as exc:
            raise RemoteProtocolError(str(exc)) from exc
        challenge = obj.get("challenge")
        if type(challenge) is not bytes or len(challenge) != CHALLENGE_BYTES:
            raise RemoteProtocolError("the peer sent no valid challenge")
        self._peer_challenge = challenge
        return peer

    def _on_hello(self, obj: dict[str, Any]) -> Event:
        version = obj.get("v")
        if type(version) is int and version != VERSION:
            # Another version's hello: refused in words its node shows (the refuse
            # frame has kept its form since version 1).
            self._step = "decide"
            return self.refuse(
                f"{self.our_name} speaks protocol version {VERSION}, not {version}: "
                "run the same version of applikant on both nodes",
                REFUSE_VERSION,
            )
        peer = self._peer_fields(obj)
        offered = obj.get("macs")
        if (
            type(offered) is not list
            or not 0 < len(offered) <= MAX_SUITES
            or not all(type(m) is str and len(m) <= 32 for m in offered)
        ):
            raise RemoteProtocolError("the hello offers no frame authentication suites")
        self.peer = peer
        self.peer_hidden = bool(obj.get("hidden", False))
        self._offered = offered
        self._step = "decide"
        self.suite = next((m for m in offered if m in self._macs), "")
        if not self.suite:
            return self.refuse(
                f"no frame authentication suite in common (offered {offered}, "
                f"{self.our_name} knows {list(self._macs)})",
                REFUSE_NO_SUITE,
            )
        mixed = names.check_same_kind(self.our_name, peer)
        if mixed:
            return self.refuse(mixed, REFUSE_MIXED_NAMES)
        if peer == self.our_name:
            return self.refuse(
                f"{peer} is this node's own name: node names must be unique", REFUSE_NAME_IN_USE
            )
        return PeerHello(peer, self.peer_hidden)

    def _on_challenge(self, obj: dict[str, Any]) -> Event | Any:
        peer = self._peer_fields(obj)
        self.peer = peer
        suite = obj.get("mac")
        if type(suite) is not str or suite not in self._offered:
            raise RemoteProtocolError(f"the peer chose {suite!r}, which was not offered")
        linked = obj.get("linked", False)
        if type(linked) is not bool:
            raise RemoteProtocolError("the challenge's linked flag is not a boolean")
        self.suite = suite
        self.linked = linked
        self._step = "prove"
        if self.expected is not None and peer != self.expected:
            return self.refuse(
                f"{peer} answered where {self.expected} was asked for", REFUSE_WRONG_NODE
            )
        if linked:
            return PeerLinked(peer)
        self._prove()
        return self.next_event()

    def _prove(self) -> None:
        self._put({"t": "proof", "digest": hmac_sha256(self._cookie, b"c" + self._transcript())})
        self._step = "welcome"

    def _on_proof(self, obj: dict[str, Any]) -> Event:
        expected = hmac_sha256(self._cookie, b"c" + self._transcript())
        got = obj.get("digest")
        if type(got) is not bytes or not compare_digest(expected, got):
            return self.refuse("wrong cookie", REFUSE_COOKIE)
        self._put({"t": "welcome", "digest": hmac_sha256(self._cookie, b"s" + self._transcript())})
        return self._done()

    def _on_welcome(self, obj: dict[str, Any]) -> Event:
        expected = hmac_sha256(self._cookie, b"s" + self._transcript())
        got = obj.get("digest")
        if type(got) is not bytes or not compare_digest(expected, got):
            self.state = State.CLOSED
            return HandshakeFailed(
                f"{self.peer} could not prove it knows the cookie",
                by_peer=False,
                code=REFUSE_COOKIE,
            )
        return self._done()

    def _transcript(self) -> bytes:
        assert self.peer is not None
        if self.role is Role.CLIENT:
            return transcript(
                self.our_name,
                self.peer,
                self._challenge,
                self._peer_challenge,
                self.hidden,
                self._offered,
                self.suite,
                self.linked,
            )
        return transcript(
            self.peer,
            self.our_name,
            self._peer_challenge,
            self._challenge,
            self.peer_hidden,
            self._offered,
            self.suite,
            self.linked,
        )

    def _done(self) -> HandshakeDone:
        """The cookie is proved both ways: the link's keys, then authenticated frames."""
        c2s, s2c = derive_keys(self._cookie, self._transcript())
        send_key, receive_key = (c2s, s2c) if self.role is Role.CLIENT else (s2c, c2s)
        self._send_mac = FrameMac(self.suite, send_key)
        self._decoder.authenticate(FrameMac(self.suite, receive_key))
        self.state = State.CONNECTED
        self._step = "done"
        self._decoder.max_frame = self._max_frame
        assert self.peer is not None
        return HandshakeDone(self.peer, self.peer_hidden)


# Where each side may refuse: a server a hello (before or after PeerHello) or a
# proof (wrong cookie), a client a challenge (not the node it asked for).
_REFUSING = {Role.SERVER: ("hello", "decide", "proof"), Role.CLIENT: ("prove",)}

_CONTAINERS = (dict, list, tuple)


def _check_keys(obj: Any) -> None:
    """Map keys must be str or bytes: the peer decodes strictly, and a frame it
    refuses would take the whole link down with every call on it."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if type(key) is not str and type(key) is not bytes:
                raise LocalProtocolError(f"map key {key!r} is not a string: cannot be sent")
            if isinstance(value, _CONTAINERS):
                _check_keys(value)
    else:
        for value in obj:
            if isinstance(value, _CONTAINERS):
                _check_keys(value)


def _registry(op: str, data: Any) -> Event | None:
    """A K_REGISTRY frame as its event. None for an operation this version does not
    know: skipped, so that a newer peer's addition does not end the link."""
    if op == OP_ADD:
        if type(data) is list and len(data) == 2 and type(data[0]) is str and _is_stamp(data[1]):
            return NameClaimed(data[0], float(data[1]))
    elif op == OP_REMOVE:
        if type(data) is str:
            return NameReleased(data)
    elif op == OP_NAMES:
        if type(data) is list and all(
            type(e) is list and len(e) == 2 and type(e[0]) is str and _is_stamp(e[1]) for e in data
        ):
            return NamesHeld([(e[0], float(e[1])) for e in data])
    elif op in (OP_SYNC, OP_SYNC_ACK):
        if type(data) is int:
            return SyncRequest(data) if op == OP_SYNC else SyncAck(data)
    elif op == OP_BYE:
        return Goodbye()
    else:
        return None
    raise RemoteProtocolError(f"malformed registry message {op!r}")


def _is_stamp(value: Any) -> bool:
    return type(value) is float or type(value) is int


def _check_id(req_id: Any) -> None:
    if type(req_id) is not int or req_id < 0:
        raise RemoteProtocolError("a request id must be a non-negative integer")


def _check_call(req_id: Any, node: Any, target: Any, method: Any) -> None:
    if type(req_id) is not int or req_id < 0:
        _check_id(req_id)  # (raises)
    if (
        (node is not None and type(node) is not str)
        or type(target) is not str
        or type(method) is not str
    ):
        raise RemoteProtocolError("a call names its node, target and method as strings")
