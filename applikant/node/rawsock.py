"""Blocking TCP connect for the ephemeral nodes, on `lean.sockets` (the `_socket`
builtin when there is one: the `socket` module imports enum and selectors, ~7 ms
that `as` would pay on every git fetch).

The objects returned have the methods the blocking driver uses (sendall, recv,
settimeout, setsockopt, detach, close); timeouts raise the builtin TimeoutError.
"""

from __future__ import annotations

from .lean import sockets


def connect(host: str, port: int, timeout: float) -> sockets.socket:
    """Connect to host:port (each resolved address in turn); OSError if none answers."""
    last: OSError | None = None
    for family, type_, proto, _, addr in sockets.getaddrinfo(host, port, 0, sockets.SOCK_STREAM):
        sock = sockets.socket(family, type_, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(addr)
            sock.setsockopt(sockets.IPPROTO_TCP, sockets.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"cannot resolve {host}")


def gethostname() -> str:
    return sockets.gethostname()
