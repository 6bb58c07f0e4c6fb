"""Making links: dialling a peer, accepting one, the handshake between them.

A link starts as a stream (TCP, found through the peer host's portmapper, or any
trio Stream a test or a caller hands in), optionally wrapped in TLS, over which
the sans-IO handshake runs under one deadline. The rules on who may link live
here and in Node._serve_link, and settle every race at once, the same way on
both sides:

- Two nodes dial each other at the same moment: the dial of the node with the
  greater name is kept (Erlang's rule). The greater refuses the smaller's hello
  (REFUSE_SIMULTANEOUS) and the smaller waits for the greater's dial, which it
  takes; if both dials got through anyway, each side keeps the greater's link.
- A node dials a peer that still holds a link to it (the peer was stopped, or
  has not noticed yet that the link died; the dialler restarted): the peer says
  so (`linked`), the dialler, having no link, proceeds, and once the cookie is
  proved the new link replaces the stale one. A dialler that has the link after
  all (it took the peer's dial meanwhile) withdraws (REFUSE_LINKED) and uses it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..logs import EventLog
from . import localsock, names, pmregister, protocol
from .errors import HandshakeRefused, NodeDown, NodeStartError, ProtocolError, Refused
from .faststream import FastSocketStream
from .protocol import NEED_DATA, HandshakeDone, HandshakeFailed, PeerHello, PeerLinked, Role
from .settings import DistSettings

log = EventLog("dist")

# Opens a stream to a peer, by name: (stream, address for logs). OSError or
# trio.TooSlowError when it cannot.
Opener = Callable[[str], Awaitable[tuple[trio.abc.Stream, str]]]


@dataclass(frozen=True, slots=True)
class Established:
    """A stream whose handshake succeeded: ready to become a Link. `dialer` is the
    node that dialled it; `replaces` the link we told the dialler we held, which
    it found stale (None if we held none)."""

    stream: trio.abc.Stream
    proto: protocol.Connection
    peer: str
    hidden: bool
    address: str
    dialer: str
    replaces: object | None = None


class Crossed(Refused):
    """Our dial gave way to a link made the other way: the peer's simultaneous dial
    (it has the greater name), or one we hold already. Wait for that link."""


class Connector:
    """Dials and accepts for one node; `current(peer)` is the link to a peer, if any."""

    def __init__(
        self,
        name: str,
        cookie: bytes,
        settings: DistSettings,
        current: Callable[[str], object | None],
        opener: Opener | None = None,
    ) -> None:
        self.name = name
        self.cookie = cookie
        self.settings = settings
        self.dialing: dict[str, trio.Event] = {}  # peers being dialled, set when done
        # Peers whose dial to us is in its handshake (set when it is over): a
        # connect() to them waits for it instead of crossing it with its own.
        self.accepting: dict[str, trio.Event] = {}
        self._current = current
        self._open = opener or self._open_tcp
        self._ssl_server: Any = None
        self._ssl_client: Any = None
        if settings.tls.enabled:
            from . import tls

            self._ssl_server = tls.server_context(settings.tls)
            self._ssl_client = tls.client_context(settings.tls)

    # ---- dialling -----------------------------------------------------------

    async def dial(self, peer: str) -> Established:
        """Open a stream to `peer` and shake hands as the client.

        Raises NodeDown (unreachable, handshake failed, someone else answered),
        Refused (the peer turned us away; Crossed when a link is coming the
        other way).
        """
        try:
            with trio.fail_after(self.settings.connect_timeout):
                stream, address = await self._open(peer)
        except (OSError, trio.TooSlowError) as exc:
            raise NodeDown(f"cannot reach {peer}: {exc or 'timed out'}") from exc
        proto = protocol.Connection(
            Role.CLIENT, self.name, self.cookie, max_frame=self.settings.max_frame, peer=peer
        )
        try:
            done, _ = await self._handshake(stream, proto, address)
        except HandshakeRefused as exc:
            await trio.aclose_forcefully(stream)
            if exc.code == protocol.REFUSE_WRONG_NODE:  # we refused: another node answered
                raise Refused(f"{address}: {exc.reason}") from exc
            if exc.code == protocol.REFUSE_LINKED:  # we withdrew: we hold a link already
                raise Crossed(exc.reason) from exc
            reason = f"{peer} refused the connection: {exc.reason}"
            if exc.code == protocol.REFUSE_SIMULTANEOUS:
                raise Crossed(reason) from exc  # the peer's own dial to us wins
            raise Refused(reason) from exc
        except (ProtocolError, OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            await trio.aclose_forcefully(stream)
            tls_error = _tls_error(exc)
            if tls_error is not None:  # as the blocking driver says it
                raise Refused(f"TLS with {peer} failed: {tls_error}") from exc
            raise NodeDown(f"handshake with {peer} failed: {_why(exc)}") from exc
        except BaseException:  # cancelled mid-handshake: the socket must not leak
            await trio.aclose_forcefully(stream)
            raise
        if done.peer != peer:
            await trio.aclose_forcefully(stream)
            raise NodeDown(f"{address} answered as {done.peer}, not {peer}")
        return Established(stream, proto, peer, False, address, dialer=self.name)

    async def _open_tcp(self, peer: str) -> tuple[trio.abc.Stream, str]:
        """The default opener: the port from the peer host's portmapper, then the
        peer's local socket if it is on this host (localsock.py), else TCP (and
        TLS when configured)."""
        name, host = names.split(peer)
        port = await pmregister.lookup(host, name, self.settings)
        busy_wait = self.settings.busy_wait_us * 1e-6
        directory = self.settings.local_socket_dir
        if directory and self._ssl_client is None and host == names.split(self.name)[1]:
            path = localsock.socket_path(directory, name, port)
            if path is not None:
                try:
                    sock = await localsock.connect(path)
                except OSError:
                    pass  # (not there, or not ours to open: TCP as before)
                else:
                    return FastSocketStream(sock, busy_wait), f"unix:{path}"
        stream: trio.abc.Stream = FastSocketStream.from_trio(
            await trio.open_tcp_stream(host, port), busy_wait
        )
        if self._ssl_client is not None:
            stream = _tls(stream, self._ssl_client, server_hostname=host)
        return stream, f"{host}:{port}"

    # ---- accepting ----------------------------------------------------------

    async def accept(self, stream: trio.abc.Stream, address: str) -> Established | None:
        """Shake hands as the server over an incoming stream; None (logged, the
        stream closed) if the peer is refused or the handshake fails."""
        if self._ssl_server is not None:
            stream = _tls(stream, self._ssl_server, server_side=True)
        proto = protocol.Connection(
            Role.SERVER, self.name, self.cookie, max_frame=self.settings.max_frame
        )
        try:
            done, replaces = await self._handshake(stream, proto, address)
        except HandshakeRefused as exc:
            if exc.code in (protocol.REFUSE_LINKED, protocol.REFUSE_SIMULTANEOUS):
                log.info("handshake_crossed", peer=proto.peer or "?", reason=exc.reason)
            else:
                log.warning(
                    "handshake_refused", peer=proto.peer or "?", address=address, reason=exc.reason
                )
            await trio.aclose_forcefully(stream)
            return None
        except (ProtocolError, OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            log.warning("handshake_failed", address=address, reason=_why(exc))
            await trio.aclose_forcefully(stream)
            return None
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        finally:
            # The caller makes the link before its next checkpoint: a connect()
            # woken by this finds it.
            self._accepted(proto.peer)
        return Established(
            stream, proto, done.peer, done.hidden, address, dialer=done.peer, replaces=replaces
        )

    def _accepted(self, peer: str | None) -> None:
        """An incoming handshake is over: wake whoever waits on it."""
        done = self.accepting.pop(peer, None) if peer is not None else None
        if done is not None:
            done.set()

    def _decide(self, hello: PeerHello, stream: trio.abc.Stream) -> tuple[str, str] | None:
        """Whether to take an incoming peer: (reason, code) to refuse it, else None.

        A peer we are dialling at this moment is refused if our name is the
        greater: our dial is the one both sides keep. A peer we hold a link to is
        taken, and told so (see the module docstring)."""
        peer = hello.peer
        if self._ssl_server is not None and not hello.hidden:
            # Hidden ephemeral nodes' names are labels only (blocking.ephemeral_name).
            from . import tls

            host = names.host_of(peer)
            if not tls.cert_matches(stream.getpeercert(), host):  # type: ignore[attr-defined]
                return (
                    f"the TLS certificate {peer} presented is not for {host}",
                    protocol.REFUSE_OTHER,
                )
        if peer in self.dialing and self._current(peer) is None and self.name > peer:
            return (
                f"{self.name} is connecting to {peer} at the same moment, and the dial "
                "of the greater name is kept",
                protocol.REFUSE_SIMULTANEOUS,
            )
        return None

    # ---- the handshake ----------------------------------------------------------

    async def _handshake(
        self, stream: trio.abc.Stream, proto: protocol.Connection, address: str
    ) -> tuple[HandshakeDone, object | None]:
        """Run the handshake under its deadline; HandshakeRefused if either side
        refuses. Also returns (server side) the link we told the peer we hold."""
        held: object | None = None
        with trio.fail_after(self.settings.handshake_timeout):
            if proto.role is Role.CLIENT:
                proto.initiate()
            while True:
                event = proto.next_event()
                if type(event) is PeerHello:
                    refusal = self._decide(event, stream)
                    if refusal is None:
                        held = self._current(event.peer)
                        proto.accept(linked=held is not None)
                        self.accepting.setdefault(event.peer, trio.Event())
                    else:
                        event = proto.refuse(*refusal)
                elif type(event) is PeerLinked:
                    if self._current(event.peer) is None:
                        proto.proceed()  # the link it holds is stale: ours replaces it
                    else:  # we took its dial meanwhile: that link is the one
                        event = proto.refuse(
                            f"{self.name} holds a link to {event.peer} already",
                            protocol.REFUSE_LINKED,
                        )
                out = proto.data_to_send()
                if out:
                    await stream.send_all(out)
                if event is NEED_DATA:
                    proto.receive_data(await stream.receive_some(4096))
                elif type(event) is HandshakeFailed:
                    if event.code == protocol.REFUSE_COOKIE and not event.by_peer:
                        log.warning("wrong_cookie", peer=proto.peer or "?", address=address)
                    raise HandshakeRefused(event.reason, event.code)
                elif type(event) is HandshakeDone:
                    return event, held


def _tls(stream: trio.abc.Stream, context: Any, **kw: Any) -> trio.abc.Stream:
    """TLS over a stream: the fast one over our own socket stream, trio's otherwise."""
    if isinstance(stream, FastSocketStream):
        from .fasttls import FastSSLStream

        return FastSSLStream(stream, context, **kw)
    return trio.SSLStream(stream, context, **kw)


def peer_address(stream: trio.abc.Stream) -> str:
    """host:port of the other end of a socket stream (`local:uid=U` over a Unix
    socket), for logs; "?" if unknown."""
    try:
        peer = stream.getpeername()  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return "?"
    if not isinstance(peer, tuple):  # (AF_UNIX: the peer's path, most often "")
        return localsock.peer_of(stream.socket)  # type: ignore[attr-defined]
    return f"{peer[0]}:{peer[1]}"


def _why(exc: BaseException) -> str:
    """Words for a failed handshake. trio's SSLStream raises an empty
    BrokenResourceError from the ssl error: the words are in its cause."""
    if isinstance(exc, trio.TooSlowError):
        return "no handshake within the deadline"
    return str(exc) or str(exc.__cause__ or "") or type(exc).__name__


def _tls_error(exc: BaseException) -> BaseException | None:
    import ssl

    for e in (exc, exc.__cause__):
        if isinstance(e, ssl.SSLError):
            return e
    return None


async def listen(settings: DistSettings) -> tuple[trio.SocketListener, int]:
    """A listener on the first free port of the node's range, and that port.

    Raises NodeStartError when every port of the range is taken.
    """
    s = settings
    family = trio.socket.AF_INET6 if ":" in s.bind_host else trio.socket.AF_INET
    for port in range(s.listen_min, s.listen_max + 1):
        sock = trio.socket.socket(family, trio.socket.SOCK_STREAM)
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        try:
            await sock.bind((s.bind_host, port))
        except OSError:
            sock.close()
            continue
        sock.listen(128)
        return trio.SocketListener(sock), port
    raise NodeStartError(f"no free port in {s.listen_min}-{s.listen_max} on {s.bind_host}")
