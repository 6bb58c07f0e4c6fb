"""The few private stdlib modules that keep `as` and `ah` fast, each with its fallback.

`as` runs on every git fetch, so what it imports is paid every time. Three public
stdlib modules cost more than the work they do for us here:

- `hashlib` loads OpenSSL (~3 ms): the builtin `_sha256` (Python 3.11; `_sha2` from
  3.12) gives the same SHA-256;
- `hmac` imports `hashlib`: `_operator._compare_digest` is the constant-time
  comparison `hmac.compare_digest` itself re-exports;
- `socket` imports `enum` and `selectors` (~7 ms): `_socket` is the same socket
  object without them; `connect` and `gethostname` below are what the blocking
  driver needs of it (`connect` skips the resolver for addresses and localhost:
  a process's first getaddrinfo costs ~7 ms);
- `msgpack` imports `datetime` and more (~7 ms): `as` and `ah` frame their few
  small messages with leanpack.py instead (`prefer_pure_codec`);
- `signal` imports `enum`, `functools` and `collections` (~2.5 ms): `_signal` has
  the same `signal()` (`restore_sigpipe`);
- `os.execvpe` imports `warnings` to read PATH (~0.5 ms, in `as` or in the child it
  forks for git): `execvpe` below walks PATH itself.

Private modules may move or vanish in a new Python: then the public module is
used (slower, never broken). Only this module imports them; tests run the
blocking driver both ways (tests/node/test_lean.py).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: it would cost `as` ~2 ms
if TYPE_CHECKING:  # the public names for the type checker: both ways quack alike
    import signal as signals
    import socket as sockets
    from collections.abc import Iterator
    from hashlib import sha256
    from hmac import compare_digest
    from typing import Any
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
    try:
        import _signal as signals
    except ImportError:
        import signal as signals

__all__ = [
    "IGNORED_SIGNALS",
    "codec",
    "compare_digest",
    "connect",
    "execvpe",
    "gethostname",
    "prefer_pure_codec",
    "restore_sigpipe",
    "sha256",
    "sockets",
]

_pure_codec = False


def prefer_pure_codec() -> None:
    """For `as` and `ah`: frame the protocol with leanpack (pure Python) instead of
    the msgpack package, whose import costs more than their few small messages.
    Has effect only before the protocol module is first imported."""
    global _pure_codec
    _pure_codec = True


def codec() -> tuple[Any, Any]:
    """(packb, unpackb): msgpack's, or leanpack's after prefer_pure_codec(). Both
    take the same arguments here: packb(obj), unpackb(data)."""
    if _pure_codec:
        from . import leanpack

        return leanpack.packb, leanpack.unpackb
    from functools import partial

    import msgpack  # type: ignore[import-untyped]

    packer = msgpack.Packer(use_bin_type=True)
    return packer.pack, partial(msgpack.unpackb, raw=False, strict_map_key=True)


def connect(host: str, port: int, timeout: float) -> sockets.socket:
    """A blocking TCP connection to host:port (each address in turn), with
    TCP_NODELAY; OSError if none answers. Timeouts raise the builtin TimeoutError."""
    last: OSError | None = None
    for family, addr in _addresses(host, port):
        sock = sockets.socket(family, sockets.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(addr)
            sock.setsockopt(sockets.IPPROTO_TCP, sockets.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError(f"cannot resolve {host}")


def _addresses(host: str, port: int) -> Iterator[tuple[int, tuple[Any, ...]]]:
    """Where host:port may be, best first. An IP address, and localhost, without
    the resolver unless those fail: the first getaddrinfo of a process loads the
    NSS modules, about 7 ms of CPU, a third of what `as` spends on a call.
    (localhost is tried as 127.0.0.1, then ::1, then as the resolver says.)"""
    for family in (sockets.AF_INET, sockets.AF_INET6):
        try:
            sockets.inet_pton(family, host)
        except OSError:
            continue
        yield family, (host, port)
        return
    if host == "localhost":
        yield sockets.AF_INET, ("127.0.0.1", port)
        yield sockets.AF_INET6, ("::1", port)
    for family, _, _, _, addr in sockets.getaddrinfo(host, port, 0, sockets.SOCK_STREAM):
        yield family, addr


def gethostname() -> str:
    return sockets.gethostname()


#: The signals Python ignores from its start that a program it starts must get at
#: their default again (what Popen's restore_signals resets), for posix_spawn's setsigdef.
IGNORED_SIGNALS = tuple(
    getattr(signals, name) for name in ("SIGPIPE", "SIGXFZ", "SIGXFSZ") if hasattr(signals, name)
)


def restore_sigpipe() -> None:
    """SIGPIPE back to its default (Python ignores it; git, exec'd or forked, must not)."""
    signals.signal(signals.SIGPIPE, signals.SIG_DFL)


def execvpe(file: str, args: list[str], env: dict[str, str]) -> None:
    """`os.execvpe`: `file` looked up in `env`'s PATH (os.defpath when unset), as
    os.execvpe does; raises the OSError of the most telling failure (not ENOENT
    or ENOTDIR when another was met) when none can be run."""
    import os

    if os.sep in file:
        os.execve(file, args, env)
    path = env.get("PATH")
    failure: OSError | None = None
    for directory in (os.defpath if path is None else path).split(os.pathsep):
        try:
            os.execve(os.path.join(directory, file), args, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            failure = failure or exc
        except OSError as exc:
            if failure is None or isinstance(failure, (FileNotFoundError, NotADirectoryError)):
                failure = exc
    raise failure or FileNotFoundError(2, "No such file or directory", file)
