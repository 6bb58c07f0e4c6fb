"""Big sites straight into am's store: thousands of users, keys, groups,
repositories and grants per transaction, for benchmarks and the tests that need
a site bigger than one call at a time would make in reasonable time.

    shape = fill("var/am.sqlite3", 100_000, readable=10_000)
    # or fill("postgresql://am@127.0.0.1:5432/applikant", ...): either backend
    # then, through am: add a user to shape.readers and they can read 10,000

The rows go through the store core (`Store.transaction`, `Tx.many`), into the
same store a running am serves (a SQLite file, whose WAL lets am read on, or a
PostgreSQL database): am sees them at once. The ids are chosen here, after the
largest ones in the store; the store then assigns its own after them
(`Tx.ids_given`), so am goes on adding users, keys and repositories.
Nothing is announced (no change events) and nothing is audited: af does not
hear of these repositories (so it makes none of them on disk) nor of these
keys (until it reads am's keys again, as on a resync).

The site, for `n` (every name starts with `prefix`):
- users `{p}u1`..`{p}uN`, each with one ed25519 key and one repository
  `{p}uI/repo`; groups `{p}g1`.. of ten users each;
- a group `{p}readers`, with no members, granted read on `readable`
  repositories spread evenly over the site; a tenth of those are public, and
  no other repository is, so a member of it reads exactly `readable`.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from applikant.manager.passwords import Passwords
from applikant.manager.store import SYSTEM, Store
from applikant.manager.store.core import Tx

__all__ = ["Shape", "fill", "key_line"]

NOW = "2024-01-01T00:00:00.000000Z"
BATCH = 20_000  # rows per statement batch


@dataclass(frozen=True)
class Shape:
    """What `fill` made: its name prefix, the readers' group, how many of each."""

    prefix: str
    readers: str
    users: int
    repos: int
    readable: int


def key_line(rng: random.Random) -> tuple[str, str]:
    """A random, well-formed ed25519 public key line and its SHA256 fingerprint."""

    def ssh_string(data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + data

    blob = ssh_string(b"ssh-ed25519") + ssh_string(rng.randbytes(32))
    fingerprint = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"ssh-ed25519 {base64.b64encode(blob).decode()}", f"SHA256:{fingerprint}"


def fill(path: str, n: int, *, readable: int = 10_000, prefix: str = "s", seed: int = 1) -> Shape:
    """Add the site described in the module docstring to the store at `path`
    (a SQLite file or a PostgreSQL URL)."""
    rng = random.Random(seed)
    readable = min(readable, n)
    step = max(1, n // readable) if readable else 0
    with Store(path, passwords=Passwords(fast=True)) as store:
        with store.core.read() as q:
            base = int(q.scalar("SELECT coalesce(max(id), 0) FROM owners"))
            key_base = int(q.scalar("SELECT coalesce(max(id), 0) FROM ssh_keys"))
            repo_base = int(q.scalar("SELECT coalesce(max(id), 0) FROM repos"))
        groups = max(1, n // 10)
        user_id = {i: base + i for i in range(1, n + 1)}
        group_id = {j: base + n + j for j in range(1, groups + 1)}
        readers = base + n + groups + 1
        granted = [i for i in range(1, n + 1) if step and i % step == 0][:readable]
        public = set(granted[::10])
        with store.transaction(SYSTEM) as tx:
            _many(tx, "INSERT INTO owners (id, name, kind) VALUES (?, ?, 'user')",
                  [(user_id[i], f"{prefix}u{i}") for i in user_id])  # fmt: skip
            _many(
                tx,
                "INSERT INTO users (id, display_name, email, created_at) VALUES (?, ?, ?, ?)",
                [(user_id[i], f"User {i}", f"{prefix}u{i}@example.org", NOW) for i in user_id],
            )
            _many(tx, "INSERT INTO owners (id, name, kind) VALUES (?, ?, 'group')",
                  [(group_id[j], f"{prefix}g{j}") for j in group_id]
                  + [(readers, f"{prefix}readers")])  # fmt: skip
            _many(tx, "INSERT INTO groups (id, description, created_at) VALUES (?, '', ?)",
                  [(g, NOW) for g in [*group_id.values(), readers]])  # fmt: skip
            _many(tx, "INSERT INTO group_members (group_id, user_id) VALUES (?, ?)",
                  [(group_id[1 + (i - 1) // 10], user_id[i]) for i in user_id])  # fmt: skip
            keys = [key_line(rng) for _ in range(n)]
            _many(
                tx,
                "INSERT INTO ssh_keys (id, user_id, title, key_type, bits, fingerprint,"
                " public_key, created_at) VALUES (?, ?, 'bulk', 'ssh-ed25519', 256, ?, ?, ?)",
                [
                    (key_base + i, user_id[i], fp, line, NOW)
                    for i, (line, fp) in enumerate(keys, start=1)
                ],
            )
            _many(
                tx,
                "INSERT INTO repos (id, owner_id, name, description, is_public, default_branch,"
                " created_at) VALUES (?, ?, 'repo', ?, ?, 'main', ?)",
                [
                    (repo_base + i, user_id[i], f"repository {i}", int(i in public), NOW)
                    for i in user_id
                ],
            )
            _many(tx, "INSERT INTO repo_perms (repo_id, grantee_id, level) VALUES (?, ?, 1)",
                  [(repo_base + i, readers) for i in granted])  # fmt: skip
            tx.ids_given("owners", "ssh_keys", "repos")
    return Shape(prefix, f"{prefix}readers", n, n, len(granted))


def _many(tx: Tx, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
    for start in range(0, len(rows), BATCH):
        tx.many(sql, rows[start : start + BATCH])
