"""Helpers shared by the manager tests (imported as tests.manager.helpers)."""

from __future__ import annotations

import base64
import os
import struct
import subprocess
from pathlib import Path


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def random_ed25519_line(comment: str = "test") -> str:
    """A structurally valid ed25519 public key line (fast; no ssh-keygen needed)."""
    blob = _ssh_string(b"ssh-ed25519") + _ssh_string(os.urandom(32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} {comment}"


class RealKeys:
    """Keys made by ssh-keygen, with the fingerprints ssh-keygen itself prints."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def make(self, name: str, key_type: str, bits: int | None = None) -> Path:
        path = self.directory / name
        if not path.exists():
            args = [
                "ssh-keygen",
                "-q",
                "-t",
                key_type,
                "-N",
                "",
                "-C",
                f"{name}@test",
                "-f",
                str(path),
            ]
            if bits is not None:
                args += ["-b", str(bits)]
            subprocess.run(args, check=True, capture_output=True)
        return path

    def public(self, name: str, key_type: str, bits: int | None = None) -> str:
        return Path(str(self.make(name, key_type, bits)) + ".pub").read_text()

    def keygen_fingerprint(self, name: str) -> tuple[int, str, str]:
        """(bits, fingerprint, type) from `ssh-keygen -lf`."""
        out = subprocess.run(
            ["ssh-keygen", "-lf", str(self.directory / name) + ".pub"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        return int(out[0]), out[1], out[-1].strip("()")
