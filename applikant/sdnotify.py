"""systemd's notify protocol (sd_notify(3)): READY, STOPPING, STATUS, WATCHDOG.

A datagram to $NOTIFY_SOCKET; nothing happens when it is not set (a daemon started
by hand or by a test without a socket).
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send one state line set (e.g. "READY=1\\nSTATUS=serving"); True if sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError:
        return False


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None
