"""A NOTIFY_SOCKET for tests: what a daemon tells systemd (READY=1, STOPPING=1)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from harness.wait import TIMEOUT


class NotifySocket:
    def __init__(self, directory: Path) -> None:
        self.path = str(directory / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = TIMEOUT) -> list[str]:
        """Wait for a datagram containing `line`; AssertionError if none comes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line in m.splitlines() for m in self.messages):
                return self.messages
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                break
        raise AssertionError(f"no {line!r} on NOTIFY_SOCKET; got {self.messages}")

    def close(self) -> None:
        self.sock.close()
