"""Talking to a portmapper with plain blocking sockets (ephemeral nodes, the CLI).

The trio side (node.py) speaks the same requests through `request_frames`.
"""

from __future__ import annotations

from . import lean
from .errors import NodeDown
from .frameauth import hmac_sha256
from .protocol import NEED_DATA, ConnectionClosed, FrameDecoder, encode_frame

TYPE_CHECKING = False  # typing itself is not imported: `as` and `ah` start faster without it
if TYPE_CHECKING:
    from typing import Any

MAX_FRAME = 1024 * 1024  # a names listing can be long
CHALLENGE_BYTES = 32


def registration_proof(cookie: bytes, challenge: bytes, name: str, port: int) -> bytes:
    """What a registration shows to prove the cookie: an HMAC over the portmapper's
    fresh challenge, the name and the port (so that it proves nothing else)."""
    n = name.encode()
    return hmac_sha256(
        cookie,
        b"applikant portmapper register\0"
        + challenge
        + len(n).to_bytes(2, "big")
        + n
        + port.to_bytes(2, "big"),
    )


def parse_answer(answer: Any, what: str) -> dict[str, Any]:
    """Check an answer's shape; raise NodeDown with the portmapper's words when not ok."""
    if type(answer) is not dict:
        raise NodeDown(f"{what}: the portmapper sent a malformed answer")
    if not answer.get("ok"):
        raise NodeDown(f"{what}: {answer.get('error', 'refused')}")
    return answer


def request(host: str, port: int, req: dict[str, Any], timeout: float = 3.0) -> dict[str, Any]:
    """One request on a fresh connection; NodeDown when no portmapper answers."""
    what = f"portmapper at {host}:{port}"
    try:
        sock = lean.connect(host, port, timeout)
        try:
            sock.sendall(encode_frame(req))
            decoder = FrameDecoder(MAX_FRAME)
            while True:
                answer = decoder.next_frame()
                if answer is not NEED_DATA:
                    break
                decoder.feed(sock.recv(65536))
        finally:
            sock.close()
    except OSError as exc:
        raise NodeDown(f"no portmapper answers at {host}:{port} ({exc.strerror or exc})") from exc
    if isinstance(answer, ConnectionClosed):
        raise NodeDown(f"{what} closed the connection")
    return parse_answer(answer, what)


def lookup(host: str, name: str, port: int, timeout: float = 3.0) -> int:
    """The listening port of node `name` on `host`; NodeDown if not registered."""
    return int(request(host, port, {"op": "lookup", "name": name}, timeout)["port"])


def names(host: str, port: int, timeout: float = 3.0) -> dict[str, int]:
    return dict(request(host, port, {"op": "names"}, timeout)["names"])
