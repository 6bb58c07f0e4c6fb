"""Accepting connections without being starved by them: the portmapper's and a node's.

Every accepted connection is counted, in total and per peer address, and capped.
A connection is *unproven* until its peer shows it holds the cookie (a node's
handshake, a portmapper registration); only unproven connections are ever closed
to make room, the oldest first. So a local user who opens thousands of silent
connections takes nothing from the cluster: each new connection pushes out the
oldest silent one, a well-behaved client's request is answered within
milliseconds of its arrival, and the cluster's own (proven) connections stay.

Running out of file descriptors (EMFILE, ENFILE) is met the same way: the oldest
unproven connection is closed, or accepting pauses a moment, and one log line
says so (and one more when it is over), never a traceback per connection. The
caps stay below the process's descriptor limit, which is raised to its hard
limit first (systemd's default soft limit is 1,024).
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable, Sequence

import trio

from ..logs import EventLog
from . import localsock

#: accept() errors that mean "no resources now", not "this listener is broken".
CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
#: How long accepting pauses when out of descriptors with nothing to close.
BACKOFF = 0.1
#: At most one line about connections closed to make room (or refused) per this
#: many seconds: a flood is one line every few seconds, not one per connection.
PRESSURE_LOG_EVERY = 10.0


class Admission:
    """One accepted connection, as the guard counts it."""

    __slots__ = ("address", "counted", "guard", "proven", "scope")

    def __init__(self, guard: Guard, address: str) -> None:
        self.guard = guard
        self.address = address
        self.proven = False
        self.counted = True  # against the caps (until it ends, or is evicted)
        self.scope = trio.CancelScope()

    def prove(self) -> None:
        """The peer showed it holds the cookie: never closed to make room."""
        if not self.proven:
            self.proven = True
            self.guard._unproven.pop(self, None)


Handler = Callable[[trio.SocketStream, Admission], Awaitable[None]]


def descriptor_budget(reserve: int = 64) -> int:
    """How many connections this process can hold: its descriptor limit (raised
    to the hard limit if it can be) less a reserve for files, logs, listeners."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
                soft = want
            except (OSError, ValueError):
                pass
        if soft == resource.RLIM_INFINITY:
            return 1 << 20
    except ImportError:  # not on Linux: no limit known, the caps alone decide
        return 1 << 20
    return max(8, soft - min(reserve, soft // 4))


class Guard:
    """Caps and eviction for one server (all its listeners)."""

    def __init__(self, what: str, *, max_total: int, max_per_address: int, log: EventLog) -> None:
        self.what = what
        self.max_total = max(1, min(max_total, descriptor_budget()))
        self.max_per_address = max(1, max_per_address)
        self.log = log
        self.total = 0
        self.per_address: dict[str, int] = {}
        # Unproven connections, oldest first (a dict keeps insertion order).
        self._unproven: dict[Admission, None] = {}
        self._pressure = {"evicted": 0, "refused": 0}
        self._pressure_logged_at = -PRESSURE_LOG_EVERY

    # ---- counting -------------------------------------------------------------

    def admit(self, address: str) -> Admission | None:
        """Count a new connection from `address`, closing the oldest unproven one
        (from that address, or any) to make room; None if there is none to close."""
        full_here = self.per_address.get(address, 0) >= self.max_per_address
        if (full_here and not self._evict(address)) or (
            self.total >= self.max_total and not self._evict(None)
        ):
            self._note("refused", address)
            return None
        adm = Admission(self, address)
        self.total += 1
        self.per_address[address] = self.per_address.get(address, 0) + 1
        self._unproven[adm] = None
        return adm

    def release(self, adm: Admission) -> None:
        """Stop counting `adm` (once; later calls do nothing)."""
        if not adm.counted:
            return
        adm.counted = False
        self._unproven.pop(adm, None)
        self.total -= 1
        left = self.per_address[adm.address] - 1
        if left:
            self.per_address[adm.address] = left
        else:
            del self.per_address[adm.address]

    def unproven(self) -> int:
        return len(self._unproven)

    def _evict(self, address: str | None) -> bool:
        """Close the oldest unproven connection (from `address` if given): its
        handler is cancelled (and closes its socket at its next step), and it
        stops counting against the caps at once."""
        victim = next((a for a in self._unproven if address is None or a.address == address), None)
        if victim is None:
            return False
        victim.scope.cancel()
        self.release(victim)
        self._note("evicted", victim.address)
        return True

    def _note(self, what: str, address: str) -> None:
        """Count a connection closed to make room (or refused); say so now and then."""
        self._pressure[what] += 1
        now = trio.current_time()
        if now - self._pressure_logged_at >= PRESSURE_LOG_EVERY:
            self.log.warning(
                "connections_full",
                server=self.what,
                last_address=address,
                connections=self.total,
                **self._pressure,
            )
            self._pressure_logged_at = now
            self._pressure = {"evicted": 0, "refused": 0}

    # ---- serving ----------------------------------------------------------------

    async def serve(
        self,
        listeners: Sequence[trio.SocketListener],
        handler: Handler,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Accept on every listener until cancelled; each connection runs
        `handler(stream, admission)` in a task of its own."""
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, handler, nursery)
            task_status.started()

    async def _accept_loop(
        self, listener: trio.SocketListener, handler: Handler, nursery: trio.Nursery
    ) -> None:
        starved = False
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in CAPACITY_ERRNOS:
                        raise
                    if not starved:
                        starved = True
                        self.log.error(
                            "out_of_descriptors",
                            server=self.what,
                            reason=exc.strerror or str(exc),
                            connections=self.total,
                        )
                    if self._evict(None):
                        await trio.lowlevel.checkpoint()  # the evicted handler closes its socket
                    else:
                        await trio.sleep(BACKOFF)
                    continue
                if starved:
                    starved = False
                    self.log.info("descriptors_available", server=self.what)
                adm = self.admit(_host(stream))
                if adm is None:
                    stream.socket.close()
                    continue
                nursery.start_soon(self._run, handler, stream, adm)

    async def _run(self, handler: Handler, stream: trio.SocketStream, adm: Admission) -> None:
        try:
            with adm.scope:
                await handler(stream, adm)
        finally:
            self.release(adm)
            await trio.aclose_forcefully(stream)


def _host(stream: trio.SocketStream) -> str:
    """The address a connection is counted under: its host, or over a Unix socket
    its peer's uid (`local:uid=U`)."""
    try:
        peer = stream.socket.getpeername()
    except OSError:
        return "?"
    if isinstance(peer, str):
        return localsock.peer_of(stream.socket)  # type: ignore[arg-type]
    return str(peer[0])
