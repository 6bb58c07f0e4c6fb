"""The portmapper: one per host, maps node names on this host to listening ports.

Like Erlang's EPMD, on its own port (4370 by default). A registration lives exactly
as long as the TCP connection that made it, and is accepted from loopback only,
from a holder of the cluster cookie: the registering node first asks for a fresh
challenge and answers it with an HMAC made with the cookie, so no local user can
squat a node's name (EPMD takes any registration). Lookups and listings are
answered to anyone (nodes on other hosts need them).

Nobody can starve it either (guard.py): connections are capped in total and per
peer address, the oldest connection that has not registered is closed to make
room, one that says nothing for `idle_timeout` seconds is closed, and running
out of descriptors costs one log line.

Wire: the frame format of protocol.py, one request map per frame, one answer per
request: {"op": "challenge"} -> {"challenge"}; {"op": "register", "name", "port",
"proof"}; {"op": "lookup", "name"} -> {"port"}; {"op": "names"} -> {"names"};
answers {"ok": true, ...} or {"ok": false, "error": "..."}. A refused
registration ends its connection.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from typing import Any

import trio

from ..logs import EventLog
from .guard import Admission, Guard
from .lean import compare_digest
from .pmclient import CHALLENGE_BYTES, registration_proof
from .protocol import NEED_DATA, ConnectionClosed, FrameDecoder, encode_frame

DEFAULT_PORT = 4370
MAX_FRAME = 1024
MAX_CONNECTIONS = 1024
MAX_PER_ADDRESS = 256
IDLE_TIMEOUT = 5.0  # for a connection that has not registered
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}\Z")

log = EventLog("portmapper")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class _Client:
    """What the portmapper knows of one connection."""

    __slots__ = ("challenge", "host", "owned", "refused")

    def __init__(self, host: str) -> None:
        self.host = host
        self.owned: set[str] = set()  # names this connection registered
        self.challenge = b""  # the last challenge given, good for one registration
        self.refused = False  # a registration failed its proof: hang up


class Portmapper:
    """The registrations table and the per-connection request loop."""

    def __init__(self, cookie: bytes, *, idle_timeout: float = IDLE_TIMEOUT) -> None:
        if not cookie:
            raise ValueError("the portmapper needs the cluster cookie")
        self.names: dict[str, int] = {}
        self.idle_timeout = idle_timeout
        self._cookie = cookie

    def answer(self, req: Any, client: _Client) -> dict[str, Any]:
        """Answer one request of `client`."""
        if type(req) is not dict:
            return {"ok": False, "error": "a request must be a map"}
        op = req.get("op")
        name = req.get("name")
        if op == "names":
            return {"ok": True, "names": dict(self.names)}
        if op == "challenge":
            client.challenge = os.urandom(CHALLENGE_BYTES)
            return {"ok": True, "challenge": client.challenge}
        if op not in ("register", "lookup"):
            return {"ok": False, "error": f"unknown request {op!r}"}
        if type(name) is not str or not _NAME.match(name):
            return {"ok": False, "error": f"{name!r} is not a node name (the part before @)"}
        if op == "lookup":
            port = self.names.get(name)
            if port is None:
                return {"ok": False, "error": f"no node named {name} on this host"}
            return {"ok": True, "port": port}
        port = req.get("port")
        if not is_loopback(client.host):
            return {"ok": False, "error": "registrations are accepted from loopback only"}
        if type(port) is not int or not 0 < port < 65536:
            return {"ok": False, "error": f"{port!r} is not a port"}
        challenge, client.challenge = client.challenge, b""  # one use
        proof = req.get("proof")
        if (
            not challenge
            or type(proof) is not bytes
            or not compare_digest(registration_proof(self._cookie, challenge, name, port), proof)
        ):
            client.refused = True
            log.warning("register_refused", name=name, peer=client.host)
            return {
                "ok": False,
                "error": "registration refused: it must prove the cluster cookie "
                "(ask for a challenge first)",
            }
        if name in self.names:
            return {"ok": False, "error": f"a node named {name} is already registered on this host"}
        self.names[name] = port
        client.owned.add(name)
        log.info("registered", name=name, port=port)
        return {"ok": True}

    async def handle(self, stream: trio.SocketStream, admission: Admission) -> None:
        client = _Client(admission.address)
        decoder = FrameDecoder(MAX_FRAME)
        try:
            while True:
                req = decoder.next_frame()
                if req is NEED_DATA:
                    # A registration lasts as long as its connection; anything else
                    # says something within idle_timeout or is closed.
                    wait = math.inf if client.owned else self.idle_timeout
                    with trio.move_on_after(wait) as idle:
                        decoder.feed(await stream.receive_some(4096))
                    if idle.cancelled_caught:
                        return
                    continue
                if isinstance(req, ConnectionClosed):
                    return
                answer = self.answer(req, client)
                if client.owned:
                    admission.prove()
                await stream.send_all(encode_frame(answer))
                if client.refused:
                    return
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            log.debug("client_gone", peer=client.host, reason=str(exc) or type(exc).__name__)
        except Exception as exc:  # one bad client never takes the daemon down
            log.warning("client_dropped", peer=client.host, reason=str(exc))
        finally:
            for name in client.owned:
                self.names.pop(name, None)
                log.info("unregistered", name=name)
            await trio.aclose_forcefully(stream)


async def serve(
    host: str | list[str] = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    cookie: bytes,
    max_connections: int = MAX_CONNECTIONS,
    max_per_address: int = MAX_PER_ADDRESS,
    idle_timeout: float = IDLE_TIMEOUT,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a portmapper until cancelled, listening on one address or several (a host's
    own address for other hosts' lookups, and loopback for its nodes' registrations);
    reports the bound port through task_status. `cookie` checks registrations."""
    pm = Portmapper(cookie, idle_timeout=idle_timeout)
    guard = Guard("portmapper", max_total=max_connections, max_per_address=max_per_address, log=log)
    hosts = [host] if isinstance(host, str) else list(host)
    listeners = await trio.open_tcp_listeners(port, host=hosts[0])
    bound = listeners[0].socket.getsockname()[1]
    for other in hosts[1:]:
        listeners += await trio.open_tcp_listeners(bound, host=other)
    log.info("listening", hosts=",".join(hosts), port=bound, max_connections=guard.max_total)
    async with trio.open_nursery() as nursery:
        await nursery.start(guard.serve, listeners, pm.handle)
        task_status.started(bound)
