"""The portmapper: one per host, maps node names on this host to listening ports.

Like Erlang's EPMD, on its own port (4370 by default). A registration lives exactly
as long as the TCP connection that made it, and is accepted from loopback only;
lookups and listings are answered to anyone (nodes on other hosts need them).

Wire: the frame format of protocol.py, one request map per frame, one answer per
request: {"op": "register", "name", "port"}, {"op": "lookup", "name"}, {"op": "names"};
answers {"ok": true, ...} or {"ok": false, "error": "..."}.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import trio

from ..logs import EventLog
from .protocol import NEED_DATA, ConnectionClosed, FrameDecoder, encode_frame

DEFAULT_PORT = 4370
MAX_FRAME = 1024
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,62}\Z")

log = EventLog("portmapper")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class Portmapper:
    """The registrations table and the per-connection request loop."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}

    def answer(self, req: Any, peer_host: str, owned: set[str]) -> dict[str, Any]:
        """Answer one request; `owned` collects the names this connection registered."""
        if type(req) is not dict:
            return {"ok": False, "error": "a request must be a map"}
        op = req.get("op")
        name = req.get("name")
        if op == "names":
            return {"ok": True, "names": dict(self.names)}
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
        if not is_loopback(peer_host):
            return {"ok": False, "error": "registrations are accepted from loopback only"}
        if type(port) is not int or not 0 < port < 65536:
            return {"ok": False, "error": f"{port!r} is not a port"}
        if name in self.names:
            return {"ok": False, "error": f"a node named {name} is already registered on this host"}
        self.names[name] = port
        owned.add(name)
        log.info("registered", name=name, port=port)
        return {"ok": True}

    async def handle(self, stream: trio.SocketStream) -> None:
        peer_host = str(stream.socket.getpeername()[0])
        decoder = FrameDecoder(MAX_FRAME)
        owned: set[str] = set()
        try:
            while True:
                req = decoder.next_frame()
                if req is NEED_DATA:
                    data = await stream.receive_some(4096)
                    decoder.feed(data)
                    continue
                if isinstance(req, ConnectionClosed):
                    return
                await stream.send_all(encode_frame(self.answer(req, peer_host, owned)))
        except Exception as exc:  # one bad client never takes the daemon down
            log.warning("client_dropped", peer=peer_host, reason=str(exc))
        finally:
            for name in owned:
                self.names.pop(name, None)
                log.info("unregistered", name=name)
            await trio.aclose_forcefully(stream)


async def serve(
    host: str | list[str] = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a portmapper until cancelled, listening on one address or several (a host's
    own address for other hosts' lookups, and loopback for its nodes' registrations);
    reports the bound port through task_status."""
    pm = Portmapper()
    hosts = [host] if isinstance(host, str) else list(host)
    listeners = await trio.open_tcp_listeners(port, host=hosts[0])
    bound = listeners[0].socket.getsockname()[1]
    for other in hosts[1:]:
        listeners += await trio.open_tcp_listeners(bound, host=other)
    log.info("listening", hosts=",".join(hosts), port=bound)
    async with trio.open_nursery() as nursery:
        task_status.started(bound)
        await trio.serve_listeners(pm.handle, listeners, handler_nursery=nursery)
