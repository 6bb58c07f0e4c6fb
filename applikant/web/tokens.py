"""Personal API tokens: `user-N.<random>`, of which only a SHA-256 hash is kept.

am is meant to keep the hashes (`am_user_db` methods `create_token`,
`list_tokens`, `revoke_token`, `verify_token`). Until am has them, `Tokens`
falls back to `LocalTokens`, a small SQLite file beside aw's session key, and
switches to am by itself as soon as am answers those methods. The token's user
id prefix lets the verifier find the user without a second secret, and the
random part (30 bytes) makes guessing hopeless.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
from datetime import datetime, timezone

from .am import Am, AmError

__all__ = ["Tokens", "LocalTokens", "token_hash", "TITLE_MAX"]

TITLE_MAX = 100


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class LocalTokens:
    """Interim token store (until am keeps tokens): hashes only, one SQLite file."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        # last_used_at is a hint, not a record: no fsync for it on every request.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS tokens (id INTEGER PRIMARY KEY, user TEXT NOT NULL,"
            " title TEXT NOT NULL, hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL,"
            " last_used_at TEXT)")

    def create(self, user: str, title: str) -> dict:
        token = f"{user}.{secrets.token_urlsafe(30)}"
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO tokens (user, title, hash, created_at) VALUES (?, ?, ?, ?)",
                (user, title, token_hash(token), _now()))
        return {**self._get(cur.lastrowid), "token": token}

    def _get(self, rowid: int | None) -> dict:
        row = self._conn.execute("SELECT * FROM tokens WHERE id = ?", (rowid,)).fetchone()
        if row is None:
            raise AmError(404, "no such token", "not_found")
        return {"id": f"token-{row[0]}", "user": row[1], "title": row[2], "created_at": row[4],
                "last_used_at": row[5]}

    def list(self, user: str) -> list[dict]:
        with self._lock:
            ids = [r[0] for r in self._conn.execute(
                "SELECT id FROM tokens WHERE user = ? ORDER BY id", (user,))]
            return [self._get(i) for i in ids]

    def owner(self, token_id: str) -> str:
        number = token_id.removeprefix("token-")
        if not number.isdigit():
            raise AmError(404, f"no token {token_id[:40]!r}", "not_found")
        with self._lock:
            return self._get(int(number))["user"]

    def revoke(self, token_id: str) -> None:
        number = token_id.removeprefix("token-")
        with self._lock:
            self._conn.execute("DELETE FROM tokens WHERE id = ?",
                               (int(number) if number.isdigit() else -1,))

    def verify(self, token: str) -> str | None:
        """The user id the token belongs to, or None."""
        with self._lock:
            row = self._conn.execute("SELECT id, user, last_used_at FROM tokens WHERE hash = ?",
                                     (token_hash(token),)).fetchone()
            if row is None or not token.startswith(row[1] + "."):
                return None
            now = _now()
            if (row[2] or "")[:16] != now[:16]:  # at most one write a minute per token
                self._conn.execute("UPDATE tokens SET last_used_at = ? WHERE id = ?",
                                   (now, row[0]))
            return row[1]


class Tokens:
    """Tokens kept by am when it can, else by `LocalTokens` (see the module docstring)."""

    def __init__(self, am: Am, local: LocalTokens) -> None:
        self.am = am
        self.local = local

    async def _am(self, method: str, *args) -> tuple[bool, object]:
        try:
            return True, await getattr(self.am, method)(*args)
        except AmError as exc:
            if exc.status == 501:
                return False, None
            raise

    async def create(self, actor: str, user: str, title: str) -> dict:
        ok, value = await self._am("create_token", actor, user, title)
        return value if ok else self.local.create(user, title)  # type: ignore[return-value]

    async def list(self, actor: str, user: str) -> list[dict]:
        ok, value = await self._am("list_tokens", actor, user)
        return value if ok else self.local.list(user)  # type: ignore[return-value]

    async def revoke(self, actor: str, user: str, token_id: str) -> None:
        ok, _ = await self._am("revoke_token", actor, user, token_id)
        if not ok:
            if self.local.owner(token_id) != user:
                raise AmError(404, f"no token {token_id[:40]!r} for this user", "not_found")
            self.local.revoke(token_id)

    async def verify(self, token: str) -> dict | None:
        """The enabled user the token belongs to, or None."""
        ok, value = await self._am("verify_token", token)
        if ok:
            return value  # type: ignore[return-value]
        user_id = self.local.verify(token)
        if user_id is None:
            return None
        try:
            user = await self.am.get_user(None, user_id)
        except AmError as exc:
            if exc.status == 404:
                return None
            raise
        return None if user.get("disabled") else user
