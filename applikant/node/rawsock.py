"""Blocking TCP connect on the `_socket` builtin: the `socket` module imports enum
and selectors, ~7 ms that `as` would pay on every git fetch.

The objects returned have the methods the blocking driver uses (sendall, recv,
settimeout, setsockopt, close); timeouts raise the builtin TimeoutError.
"""

from __future__ import annotations

import _socket


def connect(host: str, port: int, timeout: float) -> _socket.socket:
    """Connect to host:port (each resolved address in turn); OSError if none answers."""
    last: OSError | None = None
    for family, type_, proto, _, addr in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        sock = _socket.socket(family, type_, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(addr)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"cannot resolve {host}")


def gethostname() -> str:
    return _socket.gethostname()
