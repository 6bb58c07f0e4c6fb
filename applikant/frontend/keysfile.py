"""The authorized_keys file af keeps for sshd (``keys_mode = "file"``), kept
rendered so that a change costs the change, not the whole file.

Every key's forced-command line is made once, when af learns of the key (the
key is parsed, its blob decoded and checked: tens of microseconds each, seconds
for 100,000 keys). A batch of am's events then changes a few lines of a dict
and the file is written again from the lines already made: one join and one
atomic write (temp file, fsync, rename), about 20 ms for 100,000 keys here.
sshd never sees a half-written file.

Newest keys first. sshd reads the file from the top at every login (twice:
the client's offer, then its signature), parsing each line until one matches:
among 100,000 keys a key at the end costs a second or more per login here, one
near the top nothing. A key just added is the one about to be tried (a new
user, a new laptop); the oldest keys pay the most. A site with that many keys
is better served by ``keys_mode = "command"`` (keys-for: one indexed lookup per
login, whatever the number of keys).

The content is exactly :func:`applikant.frontend.authkeys.render` of the keys in
the reverse of the order af learned them, which is am's key order (a resync
lists keys by id, and new keys come after): ``applikant doctor`` compares the two.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from applikant.frontend import authkeys

__all__ = ["KeysFile"]


class KeysFile:
    """The lines of the keys file, by fingerprint; :meth:`write` puts them on disk."""

    def __init__(self, path: str, as_command: str) -> None:
        authkeys._check_as_command(as_command)  # fail at start, not at the first key
        self.path = path
        self.as_command = as_command
        self._lines: dict[str, tuple[str, str]] = {}  # fingerprint -> (user id, line)

    def __len__(self) -> int:
        return len(self._lines)

    def replace(self, keys: Iterable[Mapping[str, Any]]) -> None:
        """Forget every key and take `keys` (am's SshKey dicts), in their order."""
        self._lines = {}
        for key in keys:
            self.add(key)

    def add(self, key: Mapping[str, Any]) -> bool:
        """Take one key (am's SshKey dict); False when it was already there."""
        fingerprint = key.get("fingerprint")
        if not isinstance(fingerprint, str) or fingerprint in self._lines:
            return False
        user = str(key.get("user"))
        line = authkeys.line_for(user, str(key.get("public_key")), self.as_command, fingerprint)
        self._lines[fingerprint] = (user, line)
        return True

    def remove(self, fingerprint: str) -> bool:
        return self._lines.pop(fingerprint, None) is not None

    def remove_user(self, user: str) -> bool:
        """Drop every key of `user`; whether there was one."""
        gone = [fp for fp, (uid, _) in self._lines.items() if uid == user]
        for fp in gone:
            del self._lines[fp]
        return bool(gone)

    def lines(self) -> list[str]:
        """The lines as they are now, newest first (a copy: the file is written
        from it in a worker thread while the dict may change)."""
        return [line for _, line in reversed(self._lines.values())]

    def content(self) -> str:
        return _content(self.lines())

    def write(self, lines: list[str]) -> None:
        """Replace the file with `lines` (from :meth:`lines`), atomically."""
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, mode=0o700, exist_ok=True)
        authkeys.write_atomic(self.path, _content(lines), mode=0o600)


def _content(lines: list[str]) -> str:
    return authkeys.HEADER + "".join(line + "\n" for line in lines)
