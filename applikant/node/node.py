"""A long-lived node, driven by trio: listener, links, calls, heartbeats, the registry.

`open_node` starts a node (listening on a port of its range, registered at the
local portmapper) and stops it when the block ends. Services are registered under
a global name (one in the cluster) or a local one (on this node only); handlers
are `async def handler(ctx: CallContext, args) -> result`, run one task per call
in the calling link's scope, so a caller's node going down cancels them.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from ..logs import EventLog
from . import names, protocol
from .errors import (
    KIND_INTERNAL,
    CallTimeout,
    DistError,
    HandshakeRefused,
    LocalProtocolError,
    NameTaken,
    NodeDown,
    NodeStartError,
    NoSuchName,
    ProtocolError,
    Refused,
    RemoteError,
    ServiceError,
    error_from_reply,
    reply_from_error,
)
from .faststream import FastSocketStream
from .link import Link
from .pmclient import MAX_FRAME as PM_MAX_FRAME
from .pmclient import parse_answer
from .protocol import (
    NEED_DATA,
    Call,
    Cancel,
    Cast,
    ConnectionClosed,
    ErrorReply,
    HandshakeDone,
    HandshakeFailed,
    PeerHello,
    Peers,
    Registry,
    Reply,
    Role,
    Tick,
)
from .registry import GlobalRegistry
from .settings import DistSettings

log = EventLog("dist")

RECV_SIZE = 65536
SWEEP_EVERY = 0.02
RECONNECT_FIRST = 0.25
RECONNECT_MAX = 5.0
_DEFAULT: Any = object()

Handler = Callable[["CallContext", Any], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class CallContext:
    """What a handler knows of its call: who asked (the node it came through)."""

    node: Node
    caller: str
    service: str
    method: str


@dataclass(frozen=True, slots=True)
class NodeUp:
    node: str


@dataclass(frozen=True, slots=True)
class NodeDownEvent:
    node: str
    reason: str


@dataclass(frozen=True, slots=True)
class NameLost:
    """This node's claim on a global name lost to another node's (after a partition)."""

    name: str
    winner: str


MonitorEvent = NodeUp | NodeDownEvent | NameLost


@dataclass
class Service:
    handlers: Mapping[str, Handler]
    on_lost: Callable[[str, str], None] | None = None


class Node:
    """A named node; use `open_node` to run one."""

    def __init__(self, name: str, cookie: bytes, settings: DistSettings | None = None) -> None:
        names.split(name)
        self.name = name
        self.cookie = cookie
        self.settings = settings or DistSettings()
        self.port = 0
        self.started_at = time.time()
        self.registry = GlobalRegistry(name)
        self.links: dict[str, Link] = {}
        self._global: dict[str, Service] = {}
        self._local: dict[str, Service] = {}
        self._dialing: dict[str, trio.Event] = {}
        self._reserved: set[str] = set()
        self._departed: set[str] = set()  # peers that said goodbye: not redialled
        # For operators (/metrics, `applikant status`): calls made and served here.
        self.counters = {"calls_made": 0, "calls_served": 0, "call_errors": 0}
        self._links_changed = trio.Event()
        self._monitors: list[trio.MemorySendChannel[MonitorEvent]] = []
        self._sync_waiters: dict[int, tuple[str, trio.Event]] = {}
        self._local_casts, self._local_inbox = trio.open_memory_channel[Cast](math.inf)
        self._ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self._ssl_server = self._ssl_client = None
        if self.settings.tls.enabled:
            from . import tls

            self._ssl_server = tls.server_context(self.settings.tls)
            self._ssl_client = tls.client_context(self.settings.tls)
        self.register_local(
            "node",
            {
                "ping": self._h_ping,
                "nodes": self._h_nodes,
                "global_names": self._h_global_names,
                "info": self._h_info,
            },
        )

    # ---- public API -------------------------------------------------------

    def nodes(self) -> list[str]:
        """Connected long-lived peers (hidden ephemeral nodes are not listed)."""
        return sorted(p for p, link in self.links.items() if not link.hidden)

    def global_names(self) -> dict[str, str]:
        return self.registry.names()

    def info_counters(self) -> dict[str, int]:
        """A copy of the call counters (calls made, served, failed)."""
        return dict(self.counters)

    def register_local(self, name: str, handlers: Mapping[str, Handler]) -> None:
        """A service reachable as (this node, name), e.g. for per-host services."""
        self._local[name] = Service(handlers)

    async def register_global(
        self,
        name: str,
        handlers: Mapping[str, Handler],
        on_lost: Callable[[str, str], None] | None = None,
    ) -> None:
        """Claim a cluster-wide name. Raises NameTaken if another node holds it.

        `on_lost(name, winner)` is called if a healed partition reveals an older claim.
        """
        owner = self.registry.owner(name)
        if owner is not None and owner != self.name:
            raise NameTaken(f"{name} is already registered by {owner}")
        stamp = time.time()
        self.registry.claim(name, self.name, stamp)
        self._global[name] = Service(handlers, on_lost)
        log.info("global_registered", name=name)
        await self._broadcast(Registry("add", [name, stamp]))

    async def unregister_global(self, name: str) -> None:
        if self._global.pop(name, None) is not None:
            self.registry.withdraw(name, self.name)
            await self._broadcast(Registry("remove", name))

    async def call(
        self,
        target: str,
        method: str,
        args: Any = None,
        *,
        node: str | None = None,
        timeout: float = _DEFAULT,
    ) -> Any:
        """Call a global name (or `target` on `node`) and return its reply.

        Raises NoSuchName, NodeDown, CallTimeout or RemoteError.
        """
        if timeout is _DEFAULT:
            timeout = self.settings.call_timeout
        self.counters["calls_made"] += 1
        owner = node if node is not None else self.registry.owner(target)
        if owner is None:
            raise NoSuchName(f"no service is registered as {target}")
        if owner == self.name:
            with trio.move_on_after(timeout) as scope:
                ok, value = await self._invoke(self.name, node, target, method, args)
            if scope.cancelled_caught:
                raise CallTimeout(f"{target}.{method} did not answer within {timeout} s")
            if not ok:
                raise error_from_reply(*value)
            return value
        link = self.links.get(owner)
        if link is None:
            deadline = trio.current_time() + timeout
            with trio.move_on_at(deadline):
                link = await self.connect(owner)
            if link is None:
                raise CallTimeout(f"could not reach {owner} within {timeout} s")
            timeout = deadline - trio.current_time()
        return await link.call(node, target, method, args, timeout)

    async def cast(
        self, target: str, method: str, args: Any = None, *, node: str | None = None
    ) -> None:
        """Send without waiting for an answer; NoSuchName or NodeDown if it cannot go."""
        owner = node if node is not None else self.registry.owner(target)
        if owner is None:
            raise NoSuchName(f"no service is registered as {target}")
        if owner == self.name:
            self._local_casts.send_nowait(Cast(node, target, method, args))
            return
        with trio.fail_after(self.settings.connect_timeout):
            link = await self.connect(owner)
        await link.send_event(Cast(node, target, method, args))

    async def retire(self, grace: float) -> None:
        """Before stopping: withdraw our global names, tell peers not to wait for
        us, let running calls finish for up to `grace` seconds."""
        for name in list(self._global):
            await self.unregister_global(name)
        await self._broadcast(Registry("bye", None))
        with trio.move_on_after(grace):
            while any(link.handlers for link in self.links.values()):  # noqa: ASYNC110 - replaced by the link split
                await trio.sleep(0.05)

    def monitor(self, buffer: int = 1000) -> trio.MemoryReceiveChannel[MonitorEvent]:
        """Subscribe to NodeUp / NodeDownEvent / NameLost; close the channel to stop."""
        send, recv = trio.open_memory_channel[MonitorEvent](buffer)
        self._monitors.append(send)
        return recv

    async def sync(self, timeout: float = 5.0) -> None:
        """Wait until mesh connections in progress settle and every peer has told us
        all it knew before this call (one round trip per link keeps order)."""
        with trio.fail_after(timeout):
            while self._dialing:
                await self._links_changed.wait()
            waits = []
            for link in [lnk for lnk in self.links.values() if not lnk.hidden]:
                token = next(self._ids)
                done = trio.Event()
                self._sync_waiters[token] = (link.peer, done)
                waits.append(done)
                try:
                    await link.send_event(Registry("sync", token))
                except NodeDown:
                    done.set()
            for done in waits:
                await done.wait()

    async def connect(self, peer: str) -> Link:
        """The link to `peer`, dialling it (through its host's portmapper) if needed."""
        link = self.links.get(peer)
        if link is not None:
            return link
        names.split(peer)
        mixed = names.check_same_kind(self.name, peer)
        if mixed:
            raise Refused(mixed)
        dialing = self._dialing.get(peer)
        if dialing is not None:
            await dialing.wait()
            return self._existing(peer)
        done = self._dialing[peer] = trio.Event()
        try:
            return await self._dial(peer)
        finally:
            del self._dialing[peer]
            done.set()
            self._changed()

    # ---- dialling and accepting --------------------------------------------

    def _existing(self, peer: str) -> Link:
        link = self.links.get(peer)
        if link is None:
            raise NodeDown(f"could not connect to {peer}")
        return link

    async def _dial(self, peer: str) -> Link:
        name, host = names.split(peer)
        s = self.settings
        try:
            with trio.fail_after(s.connect_timeout):
                port = await self._pm_lookup(host, name)
                stream: trio.abc.Stream = FastSocketStream.from_trio(
                    await trio.open_tcp_stream(host, port)
                )
        except (OSError, trio.TooSlowError) as exc:
            raise NodeDown(f"cannot reach {peer}: {exc or 'timed out'}") from exc
        if self._ssl_client is not None:
            stream = trio.SSLStream(stream, self._ssl_client, server_hostname=host)
        proto = protocol.Connection(Role.CLIENT, self.name, self.cookie, max_frame=s.max_frame)
        try:
            done = await self._handshake(stream, proto, f"{host}:{port}")
        except HandshakeRefused as exc:
            await trio.aclose_forcefully(stream)
            refused = Refused(f"{peer} refused the connection: {exc.reason}")
            if exc.code in (protocol.REFUSE_SIMULTANEOUS, protocol.REFUSE_NAME_IN_USE):
                # The peer dialled us at the same moment and its link won; or a
                # node with our name is really connected there (then none comes).
                return await self._wait_for_link(peer, refused)
            raise refused from exc
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
            raise NodeDown(f"{host}:{port} answered as {done.peer}, not {peer}")
        link = Link(stream, proto, peer, False, f"{host}:{port}")
        assert self._nursery is not None
        await self._nursery.start(self._serve_link, link)
        return link

    async def _wait_for_link(self, peer: str, otherwise: DistError) -> Link:
        """Wait for the peer's own connection to us; raise `otherwise` if none comes."""
        with trio.move_on_after(self.settings.handshake_timeout):
            while peer not in self.links:
                await self._links_changed.wait()
        link = self.links.get(peer)
        if link is None:
            raise otherwise
        return link

    async def _pm_lookup(self, host: str, name: str) -> int:
        stream = await trio.open_tcp_stream(host, self.settings.portmapper_port)
        async with stream:
            answer = await _pm_request(stream, {"op": "lookup", "name": name})
        try:
            return int(parse_answer(answer, f"portmapper at {host}")["port"])
        except NodeDown as exc:
            raise OSError(str(exc)) from exc

    async def _accept(self, accepted: trio.SocketStream) -> None:
        stream: trio.abc.Stream = FastSocketStream.from_trio(accepted)
        address = _peer_address(stream)
        if self._ssl_server is not None:
            stream = trio.SSLStream(stream, self._ssl_server, server_side=True)
        proto = protocol.Connection(
            Role.SERVER, self.name, self.cookie, max_frame=self.settings.max_frame
        )
        try:
            done = await self._handshake(stream, proto, address)
        except HandshakeRefused as exc:
            log.warning(
                "handshake_refused", peer=proto.peer or "?", address=address, reason=exc.reason
            )
            await trio.aclose_forcefully(stream)
            return
        except (ProtocolError, OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            log.warning("handshake_failed", address=address, reason=_why(exc))
            await trio.aclose_forcefully(stream)
            return
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        finally:
            if proto.peer is not None:
                self._reserved.discard(proto.peer)
        link = Link(stream, proto, done.peer, done.hidden, address)
        await self._serve_link(link)

    async def _handshake(
        self, stream: trio.abc.Stream, proto: protocol.Connection, address: str
    ) -> HandshakeDone:
        """Run the handshake under its deadline; HandshakeRefused if either side refuses."""
        with trio.fail_after(self.settings.handshake_timeout):
            if proto.role is Role.CLIENT:
                proto.initiate()
            while True:
                event = proto.next_event()
                if type(event) is PeerHello:
                    refusal = self._decide(event, stream)
                    if refusal is None:
                        proto.accept()
                    else:
                        event = proto.refuse(*refusal)
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
                    return event

    def _decide(self, hello: PeerHello, stream: trio.abc.Stream) -> tuple[str, str] | None:
        """Whether to take an incoming peer: (reason, code) to refuse it, else None."""
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
        if peer in self.links or peer in self._reserved:
            return (
                f"a node named {peer} is already connected to {self.name}",
                protocol.REFUSE_NAME_IN_USE,
            )
        if peer in self._dialing and self.name < peer:
            return (
                f"{self.name} is connecting to {peer} at the same moment",
                protocol.REFUSE_SIMULTANEOUS,
            )
        self._reserved.add(peer)
        return None

    # ---- a link's life ------------------------------------------------------

    async def _serve_link(
        self, link: Link, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        peer = link.peer
        if peer in self.links:  # lost a race with a simultaneous dial
            await trio.aclose_forcefully(link.stream)
            task_status.started()
            return
        self.links[peer] = link
        self._changed()
        self._departed.discard(peer)
        if not link.hidden:
            log.info("nodeup", peer=peer, address=link.address)
            self._emit(NodeUp(peer))
        try:
            async with trio.open_nursery() as nursery:
                link.scope = nursery.cancel_scope
                nursery.start_soon(self._read_loop, link, nursery)
                nursery.start_soon(self._run_casts, link.peer, link.cast_inbox)
                task_status.started()
                if not link.hidden:
                    others = [p for p in self.nodes() if p != peer]
                    await link.send_event(Peers(others))
                    await link.send_event(Registry("names", self.registry.own()))
        except NodeDown:
            pass
        finally:
            link.close(link.down_reason)
            del self.links[peer]
            self._changed()
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(link.stream)
            for token, (p, done) in list(self._sync_waiters.items()):
                if p == peer:
                    done.set()
                    del self._sync_waiters[token]
            if not link.hidden:
                log.info("nodedown", peer=peer, reason=link.down_reason)
                self.registry.node_down(peer)
                self._emit(NodeDownEvent(peer, link.down_reason))
                if peer not in self._departed and self._nursery is not None:
                    self._spawn(self._reconnect, peer)

    async def _read_loop(self, link: Link, nursery: trio.Nursery) -> None:
        proto, stream = link.proto, link.stream
        try:
            while True:
                event = proto.next_event()
                if event is NEED_DATA:
                    data = await stream.receive_some(max(RECV_SIZE, proto.bytes_wanted()))
                    link.last_recv = trio.current_time()
                    proto.receive_data(data)
                    continue
                t = type(event)
                if t is Reply:
                    link.resolve(event.req_id, event.value)
                elif t is ErrorReply:
                    link.resolve(event.req_id, kind=event.kind, message=event.message)
                elif t is Call:
                    nursery.start_soon(self._serve_call, link, event)
                elif t is Cast:
                    link.casts.send_nowait(event)
                elif t is Cancel:
                    scope = link.handlers.get(event.req_id)
                    if scope is not None:
                        scope.cancel()
                elif t is Tick:
                    pass
                elif t is Registry:
                    await self._on_registry(link, event)
                elif t is Peers:
                    if not link.hidden:
                        for peer in event.nodes:
                            if peer != self.name and peer not in self.links:
                                self._spawn(self._try_connect, peer)
                elif t is ConnectionClosed:
                    link.close("connection closed")
                    return
        except ProtocolError as exc:
            log.warning("protocol_error", peer=link.peer, address=link.address, reason=str(exc))
            link.close(f"protocol error: {exc}")
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            link.close(f"connection lost: {exc or type(exc).__name__}")

    async def _run_casts(self, caller: str, inbox: trio.MemoryReceiveChannel[Cast]) -> None:
        """Casts from one sender are handled one after the other, in the order
        sent (Erlang's guarantee between two processes): a key removed after it
        was added is never seen the other way round."""
        async for cast in inbox:
            await self._invoke(caller, cast.node, cast.target, cast.method, cast.args)

    async def _serve_call(self, link: Link, call: Call) -> None:
        with trio.CancelScope() as scope:
            link.handlers[call.req_id] = scope
            try:
                ok, value = await self._invoke(
                    link.peer, call.node, call.target, call.method, call.args
                )
            finally:
                del link.handlers[call.req_id]
        if scope.cancelled_caught or link.closed:
            return  # the caller gave up, or its link went away meanwhile: nobody to answer
        reply: Any = Reply(call.req_id, value) if ok else ErrorReply(call.req_id, *value)
        try:
            try:
                frame = link.proto.send(reply)
            except LocalProtocolError as exc:
                log.error(
                    "reply_unencodable", service=call.target, method=call.method, reason=str(exc)
                )
                frame = link.proto.send(
                    ErrorReply(
                        call.req_id,
                        KIND_INTERNAL,
                        f"{call.target}.{call.method} gave an answer that cannot be sent",
                    )
                )
            await link.send_bytes(frame)
        except NodeDown:
            pass
        except LocalProtocolError:
            # The link closed between the check above and the send (a peer that
            # went away while this node was stopped): one lost answer, never the daemon.
            log.info("reply_dropped", peer=link.peer)

    async def _invoke(
        self, caller: str, node: str | None, target: str, method: str, args: Any
    ) -> tuple[bool, Any]:
        """Run one call here (or forward a global one); (True, value) or (False, (kind, msg))."""
        counters = self.counters
        counters["calls_served"] += 1
        try:
            if node is not None:
                if node != self.name:
                    raise NoSuchName(f"this is {self.name}, not {node}")
                service = self._local.get(target)
                if service is None:
                    raise NoSuchName(f"no service {target} on {self.name}")
            else:
                service = self._global.get(target)
                if service is None:
                    owner = self.registry.owner(target)
                    if owner is None or owner == self.name:
                        raise NoSuchName(f"no service is registered as {target}")
                    # A hidden caller reached us only: forward over the mesh.
                    return True, await self.call(target, method, args, timeout=math.inf)
            handler = service.handlers.get(method)
            if handler is None:
                raise ServiceError(f"{target} has no method {method!r}", kind="no_such_method")
            return True, await handler(CallContext(self, caller, target, method), args)
        except (DistError, ServiceError) as exc:
            counters["call_errors"] += 1
            answer = reply_from_error(exc)
            if answer is not None:
                return False, answer
            return False, (KIND_INTERNAL, str(exc))
        except Exception:
            counters["call_errors"] += 1
            log.exception("handler_crashed", service=target, method=method, caller=caller)
            return False, (
                KIND_INTERNAL,
                f"{target}.{method} failed on {self.name}; its log has the details",
            )

    async def _on_registry(self, link: Link, msg: Registry) -> None:
        if link.hidden:
            return
        op, data, peer = msg.op, msg.data, link.peer
        lost: list[str] = []
        try:
            if op == "names":
                lost = self.registry.replace_node(peer, [(str(n), float(s)) for n, s in data])
            elif op == "add":
                name, stamp = data
                lost = self.registry.claim(str(name), peer, float(stamp))
            elif op == "remove":
                self.registry.withdraw(str(data), peer)
            elif op == "sync":
                await link.send_event(Registry("sync_ack", data))
            elif op == "bye":
                self._departed.add(peer)  # a clean stop: no reconnecting to it
            elif op == "sync_ack":
                waiter = self._sync_waiters.pop(data, None)
                if waiter is not None:
                    waiter[1].set()
        except (TypeError, ValueError) as exc:
            raise protocol.RemoteProtocolError(f"malformed registry message: {exc}") from exc
        for name in lost:
            await self._lose(name)

    async def _lose(self, name: str) -> None:
        service = self._global.pop(name, None)
        winner = self.registry.owner(name) or "?"
        log.warning("global_name_lost", name=name, winner=winner)
        self._emit(NameLost(name, winner))
        if service is not None and service.on_lost is not None:
            service.on_lost(name, winner)
        await self._broadcast(Registry("remove", name))

    async def _broadcast(self, msg: Registry) -> None:
        for link in list(self.links.values()):
            if not link.hidden:
                try:
                    await link.send_event(msg)
                except NodeDown:
                    pass

    async def _reconnect(self, peer: str) -> None:
        """A peer lost without a goodbye (crash, partition): dial it again, backing
        off to RECONNECT_MAX seconds, until it is back or says goodbye, so that a
        healed partition heals the mesh and the registry by itself."""
        delay = RECONNECT_FIRST
        failures = 0
        while peer not in self.links and peer not in self._departed:
            await trio.sleep(delay)
            if peer in self.links or peer in self._departed:
                return
            try:
                await self.connect(peer)
                log.info("reconnected", peer=peer, attempts=failures + 1)
                return
            except (DistError, names.BadNodeName) as exc:
                if failures == 0:
                    log.info("reconnect_pending", peer=peer, reason=str(exc))
                failures += 1
                delay = min(delay * 2, RECONNECT_MAX)

    async def _try_connect(self, peer: str) -> None:
        try:
            await self.connect(peer)
        except (DistError, names.BadNodeName) as exc:
            log.warning("mesh_connect_failed", peer=peer, reason=str(exc))

    # ---- background ---------------------------------------------------------

    async def _tick_loop(self) -> None:
        """Heartbeats: a tick to every peer; a peer silent for tick_time is down."""
        tick = self.settings.tick_time
        frame = protocol._TICK_FRAME
        while True:
            await trio.sleep(tick / 4)
            now = trio.current_time()
            for link in list(self.links.values()):
                if now - link.last_recv > tick:
                    log.warning(
                        "peer_silent", peer=link.peer, seconds=round(now - link.last_recv, 1)
                    )
                    link.close(f"no heartbeat for {tick:g} s")
                elif not link.writing():
                    self._spawn(_send_quietly, link, frame)

    async def _sweep_loop(self) -> None:
        """Time out calls whose deadline passed (to within SWEEP_EVERY seconds)."""
        while True:
            await trio.sleep(SWEEP_EVERY)
            now = trio.current_time()
            for link in list(self.links.values()):
                for req_id in link.expired(now):
                    self._spawn(link._send_cancel, req_id)

    async def _keep_registered(self, task_status: trio.TaskStatus[None]) -> None:
        """Hold our portmapper registration; register again as soon as it comes back."""
        s = self.settings
        name = names.name_of(self.name)
        first = True
        give_up = trio.current_time() + s.portmapper_wait
        while True:
            try:
                stream = await trio.open_tcp_stream(s.portmapper_host, s.portmapper_port)
            except OSError as exc:
                if first and trio.current_time() > give_up:
                    raise NodeStartError(
                        f"no portmapper at {s.portmapper_host}:{s.portmapper_port} ({exc.strerror or exc}); "
                        "start one with `applikant portmapper`"
                    ) from exc
                await trio.sleep(0.1)
                continue
            async with stream:
                try:
                    answer = await _pm_request(
                        stream, {"op": "register", "name": name, "port": self.port}
                    )
                    parse_answer(answer, "portmapper")
                except NodeDown as exc:
                    if first:
                        raise NodeStartError(f"cannot register {self.name}: {exc}") from exc
                    log.error("reregister_refused", reason=str(exc))
                    await trio.sleep(1)
                    continue
                except (OSError, trio.BrokenResourceError, ProtocolError):
                    await trio.sleep(0.1)
                    continue
                if first:
                    first = False
                    task_status.started()
                else:
                    log.info("portmapper_reregistered", port=self.port)
                try:
                    while await stream.receive_some(1024):
                        pass
                except (OSError, trio.BrokenResourceError):
                    pass
            log.warning("portmapper_lost")
            await trio.sleep(0.05)

    async def _listen(self) -> trio.SocketListener:
        s = self.settings
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
            self.port = port
            return trio.SocketListener(sock)
        raise NodeStartError(f"no free port in {s.listen_min}-{s.listen_max} on {s.bind_host}")

    def _spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    def _emit(self, event: MonitorEvent) -> None:
        for ch in list(self._monitors):
            try:
                ch.send_nowait(event)
            except trio.WouldBlock:
                log.warning("monitor_overflow", event=type(event).__name__)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._monitors.remove(ch)

    def _changed(self) -> None:
        self._links_changed.set()
        self._links_changed = trio.Event()

    # ---- the built-in "node" service ----------------------------------------

    async def _h_ping(self, ctx: CallContext, args: Any) -> str:
        return "pong"

    async def _h_nodes(self, ctx: CallContext, args: Any) -> list[str]:
        return self.nodes()

    async def _h_global_names(self, ctx: CallContext, args: Any) -> dict[str, str]:
        return self.global_names()

    async def _h_info(self, ctx: CallContext, args: Any) -> dict[str, Any]:
        return {
            "node": self.name,
            "port": self.port,
            "uptime_s": time.time() - self.started_at,
            "nodes": self.nodes(),
            "global_names": self.global_names(),
            "own_names": sorted(self._global),
            "counters": dict(self.counters),
        }


async def _send_quietly(link: Link, frame: bytes) -> None:
    try:
        await link.send_bytes(frame)
    except NodeDown:
        pass


async def _pm_request(stream: trio.abc.Stream, req: dict[str, Any]) -> Any:
    await stream.send_all(protocol.encode_frame(req))
    decoder = protocol.FrameDecoder(PM_MAX_FRAME)
    while (answer := decoder.next_frame()) is NEED_DATA:
        decoder.feed(await stream.receive_some(65536))
    if isinstance(answer, ConnectionClosed):
        raise OSError("the portmapper closed the connection")
    return answer


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


def _peer_address(stream: trio.abc.Stream) -> str:
    try:
        host, port = stream.getpeername()[:2]  # type: ignore[attr-defined]
        return f"{host}:{port}"
    except (AttributeError, OSError):
        return "?"


@asynccontextmanager
async def _unwrapped() -> AsyncIterator[None]:
    """Let a lone exception out of the node's nursery as itself, not as a group:
    callers of open_node catch NoSuchName, not ExceptionGroup[NoSuchName]."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise


@asynccontextmanager
async def open_node(
    name: str, cookie: bytes, settings: DistSettings | None = None
) -> AsyncIterator[Node]:
    """Start a node: listening, registered at the portmapper, ticking. Stops on exit.

    Raises NodeStartError if the portmapper cannot be reached within
    `portmapper_wait`, the name is taken on this host, or no port is free.
    """
    node = Node(name, cookie, settings)
    listener = await node._listen()
    try:
        async with _unwrapped(), trio.open_nursery() as nursery:
            node._nursery = nursery
            await nursery.start(node._keep_registered)
            nursery.start_soon(node._tick_loop)
            nursery.start_soon(node._sweep_loop)
            nursery.start_soon(node._run_casts, node.name, node._local_inbox)
            nursery.start_soon(
                trio.serve_listeners,
                node._accept,
                [listener],
            )
            log.info("node_started", port=node.port)
            try:
                yield node
            finally:
                nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(listener)


__all__ = [
    "CallContext",
    "Handler",
    "HandshakeRefused",
    "NameLost",
    "Node",
    "NodeDownEvent",
    "NodeUp",
    "RemoteError",
    "open_node",
]
