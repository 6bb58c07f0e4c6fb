"""The few private stdlib modules that keep `as` and `ah` fast, each with its fallback.

`as` runs on every git fetch, so what it imports is paid every time. Three public
stdlib modules cost more than the work they do for us here:

- `hashlib` loads OpenSSL (~3 ms): the builtin `_sha256` (Python 3.11; `_sha2` from
  3.12) gives the same SHA-256;
- `hmac` imports `hashlib`: `_operator._compare_digest` is the constant-time
  comparison `hmac.compare_digest` itself re-exports;
- `socket` imports `enum` and `selectors` (~7 ms): `_socket` is the same socket
  object without them; `connect` and `gethostname` below are what the blocking
  driver needs of it.

Private modules may move or vanish in a new Python: then the public module is
used (slower, never broken). Only this module imports them; tests run the
blocking driver both ways (tests/node/test_lean.py).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: it would cost `as` ~2 ms
if TYPE_CHECKING:  # the public names for the type checker: both ways quack alike
    import socket as sockets
    from hashlib import sha256
    from hmac import compare_digest
else:
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # Python 3.12+
        except ImportError:
            from hashlib import sha256
    try:
        from _operator import _compare_digest as compare_digest
    except ImportError:
        from hmac import compare_digest
    try:
        import _socket as sockets
    except ImportError:
        import socket as sockets

__all__ = ["compare_digest", "connect", "gethostname", "sha256", "sockets"]


def connect(host: str, port: int, timeout: float) -> sockets.socket:
    """A blocking TCP connection to host:port (each resolved address in turn), with
    TCP_NODELAY; OSError if none answers. Timeouts raise the builtin TimeoutError."""
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
