"""A long-lived node and its portmapper, with trio: the registration held for the
node's life, and the lookups that find a peer's port.

A registration lives as long as its TCP connection (portmapper.py), so holding it
is reading from that connection until it ends; then the node registers again as
soon as a portmapper answers, which is how a restarted portmapper learns its
nodes back. The blocking side (ephemeral nodes, the CLI) is pmclient.py.
"""

from __future__ import annotations

from typing import Any

import trio

from ..logs import EventLog
from . import names, protocol
from .errors import NodeDown, NodeStartError, ProtocolError
from .pmclient import MAX_FRAME, parse_answer, registration_proof
from .settings import DistSettings

log = EventLog("dist")

RETRY = 0.1  # while no portmapper answers (it is starting, or restarting)
RETRY_REFUSED = 1.0  # while a portmapper refuses us (our name is held meanwhile)


async def keep_registered(
    settings: DistSettings,
    node: str,
    port: int,
    cookie: bytes,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Register `node`'s name at `port` on this host; report started once registered.

    The registration proves the cookie (the portmapper's challenge, answered with
    an HMAC). Raises NodeStartError when the first registration fails: no
    portmapper within `portmapper_wait` seconds, the name is held by another node,
    or the portmapper has another cookie. Afterwards
    runs until cancelled, registering again whenever the connection ends.
    """
    s = settings
    name = names.name_of(node)
    first = True
    give_up = trio.current_time() + s.portmapper_wait
    while True:
        try:
            stream = await trio.open_tcp_stream(s.portmapper_host, s.portmapper_port)
        except OSError as exc:
            if first and trio.current_time() > give_up:
                raise NodeStartError(
                    f"no portmapper at {s.portmapper_host}:{s.portmapper_port} "
                    f"({exc.strerror or exc}); start one with `applikant portmapper`"
                ) from exc
            await trio.sleep(RETRY)
            continue
        async with stream:
            try:
                challenge = parse_answer(await request(stream, {"op": "challenge"}), "portmapper")
                if type(challenge.get("challenge")) is not bytes:
                    raise NodeDown("the portmapper sent no challenge (an older version?)")
                proof = registration_proof(cookie, challenge["challenge"], name, port)
                answer = await request(
                    stream, {"op": "register", "name": name, "port": port, "proof": proof}
                )
                parse_answer(answer, "portmapper")
            except NodeDown as exc:
                if first:
                    raise NodeStartError(f"cannot register {node}: {exc}") from exc
                log.error("reregister_refused", reason=str(exc))
                await trio.sleep(RETRY_REFUSED)
                continue
            except (OSError, trio.BrokenResourceError, ProtocolError):
                await trio.sleep(RETRY)
                continue
            if first:
                first = False
                task_status.started()
            else:
                log.info("portmapper_reregistered", port=port)
            try:
                while await stream.receive_some(1024):
                    pass
            except (OSError, trio.BrokenResourceError):
                pass
        log.warning("portmapper_lost")
        await trio.sleep(RETRY / 2)


async def lookup(host: str, name: str, settings: DistSettings) -> int:
    """The port node `name` listens on at `host`; OSError if none is registered."""
    stream = await trio.open_tcp_stream(host, settings.portmapper_port)
    async with stream:
        answer = await request(stream, {"op": "lookup", "name": name})
    try:
        return int(parse_answer(answer, f"portmapper at {host}")["port"])
    except NodeDown as exc:
        raise OSError(str(exc)) from exc


async def request(stream: trio.abc.Stream, req: dict[str, Any]) -> Any:
    """Send one request, return its decoded answer; OSError if the portmapper hangs up."""
    await stream.send_all(protocol.encode_frame(req))
    decoder = protocol.FrameDecoder(MAX_FRAME)
    while (answer := decoder.next_frame()) is protocol.NEED_DATA:
        decoder.feed(await stream.receive_some(65536))
    if isinstance(answer, protocol.ConnectionClosed):
        raise OSError("the portmapper closed the connection")
    return answer
