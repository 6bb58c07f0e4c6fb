"""Links between nodes of one host over a Unix-domain socket instead of loopback TCP.

On this kind of machine the kernel's TCP path costs more than a call's handling:
a Python ping-pong moves 64 KB messages two to four times faster over a Unix
socket than over loopback TCP, and small ones about twice as fast. So a
long-lived node also listens on `<local_socket_dir>/<name>.<port>.sock`, and a
node dialling a peer of its own host tries that path first, TCP after it.

Nothing else changes: the portmapper still says where a peer is (the path is
named after the port it answered, so a file left by an earlier incarnation of
the name is never mistaken for the present one), and the link is the same
cookie handshake with authenticated frames, checked against the name asked
for. The socket file is 0600 in a 0700 directory; a connection that cannot
prove the cookie gets nothing, exactly as on TCP. With TLS on, links stay on
TCP (TLS is what was asked for between every pair of nodes).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct

import trio

SUFFIX = ".sock"
MAX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def socket_path(directory: str, name: str, port: int) -> str | None:
    """Where the node `name` (the part before @) listening on `port` takes local
    connections; None when the path is too long for a Unix socket (TCP only)."""
    path = os.path.join(directory, f"{name}.{port}{SUFFIX}")
    return path if len(os.fsencode(path)) <= MAX_PATH else None


async def listen(path: str) -> trio.SocketListener:
    """A listener at `path`, in a directory made 0700 if it is missing. A file
    already there is stale: the caller holds the name at the portmapper and the
    port in the path, so no live node can own it. Raises OSError."""
    directory = os.path.dirname(path)
    try:
        os.mkdir(directory, mode=0o700)
    except FileExistsError:
        pass
    else:  # made by root (ab): the directory belongs to whoever owns the data directory
        parent = os.stat(os.path.dirname(directory) or ".")
        if os.geteuid() == 0 and parent.st_uid != 0:
            os.chown(directory, parent.st_uid, parent.st_gid)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old = os.umask(0o177)  # (bound 0600 from the start: no window at the umask's mode)
        try:
            await sock.bind(path)
        finally:
            os.umask(old)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


async def connect(path: str) -> socket.socket:
    """A connected, non-blocking Unix socket to `path`; OSError if nobody listens."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        try:
            sock.connect(path)
        except BlockingIOError:  # (the listener's queue is full: wait for room)
            await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err), path) from None
    except BaseException:
        sock.close()
        raise
    return sock


_CRED = struct.Struct("3i")


def peer_of(sock: socket.socket) -> str:
    """Who is at the other end of a local connection, for logs and the listener's
    per-address cap: `local:uid=U` (SO_PEERCRED), or `local` if unknown."""
    try:
        _pid, uid, _gid = _CRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
        )
    except (OSError, AttributeError, struct.error):
        return "local"
    return f"local:uid={uid}"
