"""A long-lived node, driven by trio: its links, calls and casts, and how it runs.

`open_node` starts a node (listening on a port of its range, registered at the
local portmapper) and stops it when the block ends. Services are registered under
a global name (one in the cluster) or a local one (on this node only); handlers
are `async def handler(ctx: CallContext, args) -> result` (serving.py).

The node puts together parts with one job each: a Link per peer (its reader and
its send, link.py), the Connector that makes links (connect.py), heartbeats
(heartbeat.py), the call-deadline heap (deadlines.py), the global registry
(globalnames.py), the mesh and its reconnects (mesh.py), the portmapper
registration (pmregister.py) and the monitors (monitor.py).
"""

from __future__ import annotations

import math
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import trio

from ..logs import EventLog
from . import heap, localsock, names
from .connect import Connector, Crossed, Established, Opener, listen, peer_address
from .deadlines import Deadlines
from .errors import (
    CallTimeout,
    DistError,
    HandshakeRefused,
    NodeDown,
    NoSuchName,
    Refused,
    RemoteError,
    error_from_reply,
)
from .faststream import FastSocketStream
from .globalnames import GlobalNames
from .guard import Admission, Guard
from .heartbeat import heartbeats
from .link import EventHandler, Link
from .mesh import Mesh
from .monitor import MonitorEvent, Monitors, NameLost, NodeDownEvent, NodeUp
from .pmregister import keep_registered
from .protocol import Call, Cast, Event, Goodbye, NamesHeld, Peers
from .serving import CallContext, Handler, Service, Services
from .settings import DistSettings

log = EventLog("dist")

_DEFAULT: Any = object()


class Node:
    """A named node; use `open_node` to run one (or `run` it in a nursery of yours,
    handing it listeners or streams)."""

    def __init__(
        self,
        name: str,
        cookie: bytes,
        settings: DistSettings | None = None,
        *,
        opener: Opener | None = None,
    ) -> None:
        """`opener(peer)` opens a stream to a peer (default: its host's portmapper,
        then TCP, then TLS if configured)."""
        names.split(name)
        self.name = name
        self.cookie = cookie
        self.settings = settings or DistSettings()
        self.port = 0
        self.started_at = time.time()
        self.links: dict[str, Link] = {}
        self.monitors = Monitors()
        self.services = Services(self)
        self.counters = self.services.counters
        self.deadlines = Deadlines()
        self.mesh = Mesh(self)
        self.globalnames = GlobalNames(self)
        self.registry = self.globalnames.registry
        self._connector = Connector(name, cookie, self.settings, self.links.get, opener)
        self._links_changed = trio.Event()
        self._local_casts, self._local_inbox = trio.open_memory_channel[Cast](math.inf)
        self._nursery: trio.Nursery | None = None
        self._dispatch: dict[type[Event], EventHandler] = {
            Call: self.services.on_call,
            **self.globalnames.dispatch(),
            **self.mesh.dispatch(),
        }
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
        self.services.locals[name] = Service(handlers)

    async def register_global(
        self,
        name: str,
        handlers: Mapping[str, Handler],
        on_lost: Callable[[str, str], None] | None = None,
        *,
        stamp: float | None = None,
    ) -> None:
        """Claim a cluster-wide name. Raises NameTaken if another node holds it.

        `on_lost(name, winner)` is called if a healed partition reveals an older claim.
        `stamp` replaces the claim's time: the smallest stamp wins, so a claim
        whose stamp is below the holder's takes the name over (the holder is told
        it lost, as after a partition). A standby am claims with its lease's
        epoch, negated: the newest lease wins wherever partitions heal.
        """
        await self.globalnames.register(name, handlers, on_lost, stamp)

    async def unregister_global(self, name: str) -> None:
        await self.globalnames.unregister(name)

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
                ok, value = await self.services.invoke(self.name, node, target, method, args)
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
        for name in list(self.services.globals):
            await self.unregister_global(name)
        await self.globalnames.broadcast(Goodbye())
        with trio.move_on_after(grace):
            await self.services.wait_idle()

    def monitor(self, buffer: int = 1000) -> trio.MemoryReceiveChannel[MonitorEvent]:
        """Subscribe to NodeUp / NodeDownEvent / NameLost; close the channel to stop."""
        return self.monitors.subscribe(buffer)

    async def sync(self, timeout: float = 5.0) -> None:
        """Wait until mesh connections in progress settle and every peer has told us
        all it knew before this call (one round trip per link keeps order)."""
        with trio.fail_after(timeout):
            while self._connector.dialing:
                await self._links_changed.wait()
            await self.globalnames.sync()

    async def connect(self, peer: str) -> Link:
        """The link to `peer`, dialling it (through its host's portmapper) if needed.

        Raises NodeDown or Refused (and BadNodeName for a malformed name).
        """
        link = self.links.get(peer)
        if link is not None:
            return link
        names.split(peer)
        mixed = names.check_same_kind(self.name, peer)
        if mixed:
            raise Refused(mixed)
        nursery = self._running()
        connector = self._connector
        incoming = connector.accepting.get(peer)
        if incoming is not None:  # the peer is dialling us: that link, not a crossing one
            await incoming.wait()
            link = self.links.get(peer)
            if link is not None:
                return link
        dialing = connector.dialing
        in_progress = dialing.get(peer)
        if in_progress is not None:
            await in_progress.wait()
            return self._existing(peer)
        done = dialing[peer] = trio.Event()
        try:
            try:
                established = await self._connector.dial(peer)
            except Crossed as exc:
                return await self._wait_for_link(peer, exc)
            link = self._link(established)
            await nursery.start(self._serve_link, link)
            return self.links.get(peer, link)
        finally:
            del dialing[peer]
            done.set()
            self._changed()

    # ---- running ----------------------------------------------------------------

    async def run(
        self,
        listeners: Sequence[trio.SocketListener] = (),
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run the node until cancelled: heartbeats, call deadlines, local casts,
        its links, and connections accepted on `listeners`. open_node adds the
        listening port and the portmapper registration."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self.deadlines.run)
                nursery.start_soon(heartbeats, self.links.values, self.settings.tick_time)
                nursery.start_soon(self.services.run_casts, self.name, self._local_inbox)
                if listeners:
                    s = self.settings
                    guard = Guard(
                        self.name,
                        max_total=s.max_connections,
                        max_per_address=s.max_connections_per_address,
                        log=log,
                    )
                    await nursery.start(guard.serve, listeners, self._accept_tcp)
                task_status.started()
        finally:
            self._nursery = None

    async def accept(self, stream: trio.abc.Stream, address: str = "?") -> None:
        """Serve one incoming connection: the handshake, then the link for its life."""
        established = await self._connector.accept(stream, address)
        if established is not None:
            await self._serve_link(self._link(established))

    async def _accept_tcp(self, accepted: trio.SocketStream, admission: Admission) -> None:
        """A connection from a listener: counted by the guard, which may close it
        to make room until its handshake proves the cookie."""
        stream = FastSocketStream.from_trio(accepted, self.settings.busy_wait_us * 1e-6)
        established = await self._connector.accept(stream, peer_address(stream))
        if established is not None:
            admission.prove()
            await self._serve_link(self._link(established))

    def spawn(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run `fn(*args)` for the node's life; nothing once the node has stopped."""
        if self._nursery is None:
            return
        try:
            self._nursery.start_soon(fn, *args)
        except RuntimeError:  # the nursery is closed to new tasks: the node stopped
            pass

    def _running(self) -> trio.Nursery:
        if self._nursery is None:
            raise NodeDown(f"{self.name} is not running")
        return self._nursery

    # ---- a link's life ------------------------------------------------------------

    def _link(self, est: Established) -> Link:
        return Link(
            est.stream,
            est.proto,
            est.peer,
            est.hidden,
            est.address,
            self.deadlines,
            dialer=est.dialer,
            replaces=est.replaces,
        )

    async def _serve_link(
        self, link: Link, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        peer = link.peer
        try:
            while (old := self.links.get(peer)) is not None:
                if not _supersedes(link, old):  # the other link of a crossed dial stays
                    await trio.aclose_forcefully(link.stream)
                    task_status.started()
                    return
                log.info("link_replaced", peer=peer, dialer=link.dialer, address=link.address)
                old.close(f"replaced by a new link dialled by {link.dialer}")
                await old.finished.wait()  # its nodedown, before this one's nodeup
            await self._run_link(link, task_status)
        finally:
            link.finished.set()

    async def _run_link(self, link: Link, task_status: trio.TaskStatus[None]) -> None:
        peer = link.peer
        self.links[peer] = link
        self._changed()
        greeting: list[Event] = []
        if not link.hidden:
            self.mesh.link_up(peer)
            log.info("nodeup", peer=peer, address=link.address)
            self.monitors.emit(NodeUp(peer))
            # Our other peers (the mesh) and our names, before any answer of ours.
            others = [p for p in self.nodes() if p != peer]
            greeting = [Peers(others), NamesHeld(self.registry.own())]
        try:
            await link.run(
                self._dispatch, [self.services.link_casts], greeting, task_status=task_status
            )
        finally:
            if self.links.get(peer) is link:
                del self.links[peer]
            self._changed()
            if not link.hidden:
                log.info("nodedown", peer=peer, reason=link.down_reason)
                self.globalnames.link_down(peer)
                self.monitors.emit(NodeDownEvent(peer, link.down_reason))
                self.mesh.link_down(peer)

    def _existing(self, peer: str) -> Link:
        link = self.links.get(peer)
        if link is None:
            raise NodeDown(f"could not connect to {peer}")
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
            "cpu_s": time.process_time(),  # (what serving costs: bench.dist)
            "page_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt,
            "nodes": self.nodes(),
            "global_names": self.global_names(),
            "own_names": sorted(self.services.globals),
            "counters": dict(self.counters),
        }


def _supersedes(new: Link, old: Link) -> bool:
    """Whether a newly made link takes the place of the one held to the same peer;
    both sides of a crossed dial answer the same (connect.py's rules)."""
    if new.replaces is old:  # its dialler found our link stale
        return True
    if new.dialer == old.dialer:  # a node's newer dial (its older one is gone to it)
        return True
    return new.dialer > old.dialer  # crossed dials: the greater name's stays


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
    heap.keep_freed_memory()  # (large messages without page faults: heap.py)
    listener, node.port = await listen(node.settings)
    listeners = [listener]
    local: str | None = None
    try:
        async with _unwrapped(), trio.open_nursery() as nursery:
            await nursery.start(
                partial(keep_registered, node.settings, node.name, node.port, cookie)
            )
            local = await _listen_local(node, listeners)  # (the name is ours now)
            await nursery.start(node.run, listeners)
            log.info("node_started", port=node.port, local=local or "")
            try:
                yield node
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if local is not None:  # (first: while our TCP port is held, no new node can
            localsock.remove(local)  # take this path, so we never remove a successor's)
        for each in listeners:
            await trio.aclose_forcefully(each)


async def _listen_local(node: Node, listeners: list[trio.SocketListener]) -> str | None:
    """Also listen on the node's Unix socket (localsock.py), if configured and
    possible; its path. A node that cannot still works over TCP, said once."""
    s = node.settings
    if not s.local_socket_dir or s.tls.enabled:
        return None
    path = localsock.socket_path(s.local_socket_dir, names.name_of(node.name), node.port)
    if path is None:
        log.warning("local_socket_skipped", reason="path too long", dir=s.local_socket_dir)
        return None
    try:
        listeners.append(await localsock.listen(path))
    except OSError as exc:
        log.warning("local_socket_skipped", reason=exc.strerror or str(exc), path=path)
        return None
    return path


__all__ = [
    "CallContext",
    "Handler",
    "HandshakeRefused",
    "MonitorEvent",
    "NameLost",
    "Node",
    "NodeDownEvent",
    "NodeUp",
    "RemoteError",
    "open_node",
]
