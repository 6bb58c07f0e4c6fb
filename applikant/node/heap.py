"""Freed memory kept for the next large message, not handed back to the kernel at once.

glibc gives the top of its heap back to the kernel (trims it) whenever more than
its trim threshold (128 KB at first) lies free there. A node that receives a
64 KB message hands its handler (or caller) a fresh bytes object each time; once
that is freed the memory went back to the kernel, and the next message faulted
its 16 pages in again: 14.7 page faults per 64 KB call, ~35 µs of the caller's
~150 µs of CPU (bench.dist). glibc raises the thresholds itself ("dynamic mmap
threshold"), but only after freeing a chunk it had mmapped, which a node that
never saw a message over 128 KB never did.

`keep_freed_memory` sets once per process what that rule reaches for 4 MB
messages: allocations under 4 MB come from the heap, and its top is trimmed
beyond 8 MB free. A process so keeps at most 8 MB it does not use. Only on glibc,
and only if MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES do not
say otherwise (then those rule).
"""

from __future__ import annotations

import os

M_TRIM_THRESHOLD = -1  # mallopt's parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 4 << 20
TRIM_THRESHOLD = 8 << 20
_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")

_done = False


def keep_freed_memory() -> bool:
    """Set glibc's thresholds as the module says, once; whether they are set now."""
    global _done
    if _done:
        return True
    if not _is_glibc() or any(name in os.environ for name in _ENV):
        return False
    import ctypes

    mallopt = ctypes.CDLL(None).mallopt
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _done


def _is_glibc() -> bool:
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        return False
    return bool(version) and str(version).startswith("glibc")
