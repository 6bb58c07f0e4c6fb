"""One push, one name: the ``git-receive-pack`` process that carries it.

A push's pre-receive and post-receive hooks run in different processes (two
``ah``, or two requests ``as`` answers), and af may be restarted between them.
They agree on the push all the same, without talking to each other: the push
is its receive-pack process, named on this host by ``(pid, start time)`` (a
pid is reused, the pair is not while the machine is up) and across hosts and
reboots by the kernel's ``boot_id``. Its :func:`event_id` is derived from the
three, so that both hooks, a spooled copy and af's write-ahead record all
carry the same event id, and am records the push once (it deduplicates on it).

:func:`alive` tells whether the push may still be in flight: while its
receive-pack lives, refs may still move; once it is gone, they are final.

No ``hashlib`` (``as`` and ``ah`` import this on every push): the node
protocol's own HMAC-SHA256, which they have loaded already.
"""

from __future__ import annotations

from applikant.node.frameauth import hmac_sha256

__all__ = ["alive", "event_id", "identify", "is_receive_pack", "start_time"]

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


def start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None when there
    is no such process or it is a zombie (exited, not yet reaped)."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def is_receive_pack(pid: int) -> bool:
    """Whether process ``pid`` runs git's receive-pack (a hook run by anything
    else, e.g. by hand, is no push of its own)."""
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, ValueError):
        return False
    return any(arg.endswith((b"receive-pack", b"git-receive-pack")) for arg in argv[:2])


def _boot_id() -> str:
    try:
        with open(_BOOT_ID, "rb") as f:  # bytes: a text file would import a codec
            return f.read().strip().decode("ascii", "replace")
    except OSError:
        return ""


def event_id(pid: int, start: int) -> str:
    """The event id of the push carried by receive-pack ``(pid, start)``: a
    UUID-shaped hex string, the same wherever it is computed on this boot."""
    h = bytearray(hmac_sha256(_boot_id().encode(), f"{pid}:{start}".encode())[:16])
    h[6] = (h[6] & 0x0F) | 0x50  # version 5 (name-based), as uuid5 would mark it
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def identify(pid: int) -> dict[str, object] | None:
    """``{"pid", "start", "event_id"}`` of the push receive-pack ``pid`` carries,
    or None when the process cannot be seen."""
    start = start_time(pid)
    if start is None:
        return None
    return {"pid": pid, "start": start, "event_id": event_id(pid, start)}


def alive(pid: object, start: object) -> bool:
    """Whether receive-pack ``(pid, start)`` still runs (its push may be in flight)."""
    if not isinstance(pid, int) or not isinstance(start, int) or pid <= 0:
        return False
    return start_time(pid) == start
