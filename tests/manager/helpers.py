"""Helpers shared by the manager tests (imported as tests.manager.helpers)."""

from __future__ import annotations

import base64
import os
import struct
import subprocess
from pathlib import Path
from typing import Any


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


# ---- what differs between the backends, for tests that look underneath -----------


def is_postgres(store: Any) -> bool:
    return bool(store.core.backend.name == "postgresql")


def raw(store: Any, sql: str, params: tuple[Any, ...] = ()) -> Any:
    """Run `sql` (`?` placeholders) on the store's own connection: a cursor."""
    return store.core.connection.execute(store.core.backend.prepare(sql), params)


def plan(store: Any, sql: str, params: tuple[Any, ...] = ()) -> list[str]:
    """The query plan of `sql`, one line per step. On PostgreSQL sequential
    scans are disabled first, so that an index is used whenever one fits
    however small the tables (a scan in the plan then means there is none)."""
    if not is_postgres(store):
        return [row["detail"] for row in raw(store, "EXPLAIN QUERY PLAN " + sql, params)]
    raw(store, "SET enable_seqscan = off")
    try:
        return [row[0] for row in raw(store, "EXPLAIN (COSTS OFF) " + sql, params)]
    finally:
        raw(store, "RESET enable_seqscan")


def scans_a_table(steps: list[str]) -> bool:
    """Whether a plan (from `plan`) reads a whole table."""
    return any(s.startswith("SCAN") or "Seq Scan" in s for s in steps)


def uses_index(steps: list[str], name: str = "") -> bool:
    return any(("USING" in s and "INDEX" in s) or "Index" in s for s in steps) and (
        not name or any(name in s for s in steps)
    )


def break_audit(store: Any) -> None:
    """Make every audit insert fail, as a constraint would half-way through a change."""
    if is_postgres(store):
        raw(
            store,
            "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " RAISE EXCEPTION 'audit insert failed' USING ERRCODE = 'check_violation'; END $$",
        )
        raw(
            store,
            "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log"
            " FOR EACH ROW EXECUTE FUNCTION fail_audit()",
        )
    else:
        raw(
            store,
            "CREATE TEMP TRIGGER fail_audit BEFORE INSERT ON audit_log"
            " BEGIN SELECT RAISE(ABORT, 'audit insert failed'); END",
        )


def mend_audit(store: Any) -> None:
    if is_postgres(store):
        raw(store, "DROP TRIGGER fail_audit ON audit_log")
    else:
        raw(store, "DROP TRIGGER temp.fail_audit")
