"""Ephemeral hidden nodes over plain blocking sockets, for `as`, `ah` and the CLI.

An ephemeral node connects to exactly one long-lived node, never listens, never
joins the mesh; that node runs the call or forwards it to the owner of the global
name. Imports only the stdlib, msgpack and the protocol core: `import trio` alone
would cost more than the whole call.
"""

from __future__ import annotations

import os
import time

from . import frameauth, lean, names, protocol
from .errors import (
    CallTimeout,
    HandshakeRefused,
    NodeDown,
    ProtocolError,
    Refused,
    RemoteProtocolError,
    error_from_reply,
)
from .protocol import NEED_DATA, ConnectionClosed, ErrorReply, Reply, Role
from .settings import DistSettings


def ephemeral_name(prefix: str, peer: str) -> str:
    """`<prefix>_<pid>@<this host>`, of the same kind (short/long) as `peer`."""
    peer_long = names.is_long(peer)
    host = lean.gethostname()
    if peer_long and "." not in host:
        host = names.host_of(peer)  # an ephemeral name is a label only; keep the kind
    elif not peer_long:
        host = host.split(".")[0]
    global _made
    _made += 1
    # A process that opens several ephemeral links in a row (tests, benchmarks)
    # must not meet its previous link, not yet gone, under the same name.
    suffix = f"_{_made}" if _made > 1 else ""
    return f"{prefix}_{os.getpid()}{suffix}@{host}"


_made = 0


class EphemeralNode:
    """A hidden node linked to one peer. Use as a context manager, or call close()."""

    def __init__(
        self,
        peer: str,
        cookie: bytes,
        *,
        prefix: str = "cli",
        settings: DistSettings | None = None,
        timeout: float | None = None,
        port: int | None = None,
    ) -> None:
        """Connect and shake hands with `peer` within `timeout` seconds; at `port`
        when the caller knows it (the portmapper is not asked then).

        Raises NodeDown (nothing answers), Refused (the peer turned us away, or
        another node answered at `port`).
        """
        self.peer = peer
        self.settings = s = settings or DistSettings()
        self.name = ephemeral_name(prefix, peer)
        self._next_id = 0
        deadline = time.monotonic() + (timeout if timeout is not None else s.connect_timeout)
        name, host = names.split(peer)
        try:
            if port is None:  # (as and ah know af's port from its port file)
                from . import pmclient

                port = pmclient.lookup(host, name, s.portmapper_port, _left(deadline, peer))
        except NodeDown as exc:
            raise NodeDown(f"{peer} is not reachable: {exc}") from None
        try:
            sock = lean.connect(host, port, _left(deadline, peer))
        except OSError as exc:
            raise NodeDown(
                f"{peer} is not reachable at {host}:{port} ({exc.strerror or exc})"
            ) from None
        if s.tls.enabled:
            import socket

            from . import tls

            try:
                sock = socket.socket(fileno=sock.detach())
                sock = tls.client_context(s.tls).wrap_socket(sock, server_hostname=host)
            except OSError as exc:
                sock.close()
                raise Refused(f"TLS with {peer} failed: {exc}") from None
        self._sock = sock
        self._proto = protocol.Connection(
            Role.CLIENT,
            self.name,
            cookie,
            hidden=True,
            max_frame=s.max_frame,
            macs=frameauth.LEAN_SUITES,
            peer=peer,
        )
        try:
            self._handshake(deadline)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> EphemeralNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass

    def _handshake(self, deadline: float) -> None:
        proto = self._proto
        proto.initiate()
        try:
            while True:
                event = proto.next_event()
                out = proto.data_to_send()
                if out:
                    self._sock.sendall(out)
                if event is NEED_DATA:
                    self._sock.settimeout(_left(deadline, self.peer))
                    proto.receive_data(self._sock.recv(4096))
                elif type(event) is protocol.PeerLinked:
                    proto.proceed()  # (a stale link of a process of ours with this pid)
                elif type(event) is protocol.HandshakeFailed:
                    if not event.by_peer:  # we refused: another node answered
                        raise Refused(event.reason)
                    raise Refused(f"{self.peer} refused the connection: {event.reason}")
                elif type(event) is protocol.HandshakeDone:
                    if event.peer != self.peer:  # (the core refuses it first)
                        raise Refused(f"{event.peer} answered where {self.peer} was asked for")
                    return
        except HandshakeRefused as exc:
            raise Refused(f"{self.peer} refused the connection: {exc.reason}") from None
        except (OSError, ProtocolError) as exc:
            raise NodeDown(f"handshake with {self.peer} failed: {exc or 'timed out'}") from None

    def call(
        self,
        target: str,
        method: str,
        args: object = None,
        *,
        node: str | None = None,
        timeout: float | None = None,
    ) -> object:
        """Call a global name (or `target` on `node`) through the peer; return the reply.

        Ticks keep the link alive while a long call runs. Raises NoSuchName,
        NodeDown, CallTimeout or RemoteError.
        """
        s = self.settings
        timeout = s.call_timeout if timeout is None else timeout
        self._next_id += 1
        req_id = self._next_id
        proto, sock = self._proto, self._sock
        try:
            sock.sendall(proto.send(protocol.Call(req_id, node, target, method, args)))
            deadline = time.monotonic() + timeout
            tick_every = s.tick_time / 4
            while True:
                event = proto.next_event()
                if event is NEED_DATA:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise CallTimeout(f"{target}.{method} did not answer within {timeout:g} s")
                    sock.settimeout(min(left, tick_every))
                    try:
                        data = sock.recv(262144)
                    except TimeoutError:
                        sock.sendall(proto.send(protocol.TICK))
                        continue
                    proto.receive_data(data)
                    continue
                if type(event) is Reply and event.req_id == req_id:
                    return event.value
                if type(event) is ErrorReply and event.req_id == req_id:
                    raise error_from_reply(event.kind, event.message)
                if type(event) is protocol.Call:  # we serve nothing
                    sock.sendall(
                        proto.send(
                            ErrorReply(event.req_id, "no_such_name", f"{self.name} serves nothing")
                        )
                    )
                elif type(event) is ConnectionClosed:
                    raise NodeDown(f"{self.peer} closed the connection during {target}.{method}")
        except (OSError, RemoteProtocolError) as exc:
            raise NodeDown(f"lost {self.peer} during {target}.{method}: {exc}") from None


def _left(deadline: float, peer: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise NodeDown(f"{peer} did not answer in time")
    return left


def call(
    peer: str,
    cookie: bytes,
    target: str,
    method: str,
    args: object = None,
    *,
    prefix: str = "cli",
    node: str | None = None,
    settings: DistSettings | None = None,
    timeout: float | None = None,
) -> object:
    """Connect, call once, close: what `as`, `ah` and most CLI commands do."""
    with EphemeralNode(peer, cookie, prefix=prefix, settings=settings, timeout=timeout) as eph:
        return eph.call(target, method, args, node=node, timeout=timeout)
