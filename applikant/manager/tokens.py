"""Personal API tokens: `user-42.<43 random URL-safe characters>`, kept as hashes.

A token stands for its user in aw's REST API and for HTTP clones of private
repositories. The secret is made here from 32 random bytes, shown once (in the
answer to create_token) and never stored: the table keeps its SHA-256, and a
token is found by that hash through its unique index, so a lookup takes the
same path whatever the secret (no comparison of secrets character by
character). The `user-42.` prefix must name the token's owner as well: it lets
people see whose token it is, and a token pasted with a changed prefix fails.

Tokens of a disabled account stop working and start again when it is enabled,
like its SSH keys. Creating and revoking are audited (`token.create`,
`token.revoke`, never with the secret or its hash); using one only records
`last_used_at`, at most once a minute per token, so that a busy API client does
not cost a durable write per request.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from datetime import timedelta

from applikant.manager.base import USER_SELECT, StoreBase, parse_id
from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.models import ApiToken, NewApiToken, User
from applikant.manager.names import check_text
from applikant.manager.users import user_from_row

TITLE_MAX = 100
TOKENS_PER_USER_MAX = 100
TOKEN_MAX = 512
SECRET_BYTES = 32
TOUCH_EVERY = timedelta(seconds=60)

TOKEN_SELECT = "SELECT id, user_id, title, token_hash, created_at, last_used_at FROM api_tokens"


def token_hash(token: str) -> str:
    """The hex SHA-256 of a token: what the table keeps and looks tokens up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_from_row(row: sqlite3.Row) -> ApiToken:
    return ApiToken(
        id=f"token-{row['id']}",
        user=f"user-{row['user_id']}",
        title=row["title"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )


def _check_title(title: object) -> str:
    if not isinstance(title, str) or not title.strip():
        raise BadRequest("a token needs a title, saying what uses it")
    return check_text(title.strip(), "token title", TITLE_MAX)


class TokensMixin(StoreBase):
    def _token_row(self, conn: sqlite3.Connection, ref: object) -> sqlite3.Row:
        number = parse_id(ref, "token") if isinstance(ref, str) else None
        if number is None:
            raise BadRequest(f"{str(ref)[:80]!r} is not a token id (token-7)")
        row = conn.execute(TOKEN_SELECT + " WHERE id = ?", (number,)).fetchone()
        if row is None:
            raise NotFound(f"no token {ref}")
        return row

    def create_token(
        self, user: str, title: str, *, actor: str, node: str | None = None
    ) -> NewApiToken:
        """Make a new token for `user`; the answer is the only place its secret appears.

        Raises BadRequest for a missing or over-long title, NotFound for an unknown
        user, Conflict when the user already has TOKENS_PER_USER_MAX tokens.
        """
        title = _check_title(title)
        with self._write(actor, node) as tx:
            owner = self._user_row(tx.conn, user)
            (count,) = tx.conn.execute(
                "SELECT count(*) FROM api_tokens WHERE user_id = ?", (owner["id"],)
            ).fetchone()
            if count >= TOKENS_PER_USER_MAX:
                raise Conflict(
                    f"{owner['login']} has {count} tokens already; revoke some before making more"
                )
            uid = f"user-{owner['id']}"
            secret = f"{uid}.{secrets.token_urlsafe(SECRET_BYTES)}"
            cur = tx.conn.execute(
                "INSERT INTO api_tokens (user_id, title, token_hash, created_at)"
                " VALUES (?, ?, ?, ?)",
                (owner["id"], title, token_hash(secret), tx.now),
            )
            token_id = f"token-{cur.lastrowid}"
            tx.audit("token.create", user=uid, login=owner["login"], token=token_id, title=title)
            made = token_from_row(self._token_row(tx.conn, token_id))
            return NewApiToken(**made.model_dump(), token=secret)

    def list_tokens(self, user: str) -> list[ApiToken]:
        """The tokens of one user (no secrets), oldest first. Raises NotFound."""
        with self._read() as conn:
            owner = self._user_row(conn, user)
            rows = conn.execute(
                TOKEN_SELECT + " WHERE user_id = ? ORDER BY id", (owner["id"],)
            ).fetchall()
        return [token_from_row(row) for row in rows]

    def revoke_token(
        self, ref: str, *, actor: str, node: str | None = None, user: str | None = None
    ) -> ApiToken:
        """Delete the token `token-7` at once; return what was revoked.

        With `user`, the token must belong to that user: someone else's token is
        reported as not found, which reveals nothing about it.
        """
        with self._write(actor, node) as tx:
            row = self._token_row(tx.conn, ref)
            if user is not None:
                owner_row = self._user_row(tx.conn, user)
                if owner_row["id"] != row["user_id"]:
                    raise NotFound(f"{owner_row['login']} has no token {ref}")
            else:
                owner_row = self._user_row(tx.conn, f"user-{row['user_id']}")
            revoked = token_from_row(row)
            tx.conn.execute("DELETE FROM api_tokens WHERE id = ?", (row["id"],))
            tx.audit(
                "token.revoke",
                user=revoked.user,
                login=owner_row["login"],
                token=revoked.id,
                title=revoked.title,
            )
            return revoked

    def find_token(self, token: object) -> tuple[ApiToken, User] | None:
        """The token and its enabled owner for a secret, or None; nothing is written.

        Unknown, malformed and revoked tokens, a prefix that names another user,
        and tokens of disabled accounts are all None.
        """
        if not isinstance(token, str) or not 0 < len(token) <= TOKEN_MAX:
            return None
        digest = token_hash(token)
        with self._read() as conn:
            row = conn.execute(TOKEN_SELECT + " WHERE token_hash = ?", (digest,)).fetchone()
            if row is None:
                return None
            user = conn.execute(USER_SELECT + " WHERE u.id = ?", (row["user_id"],)).fetchone()
        if user is None or user["disabled"] or not token.startswith(f"user-{row['user_id']}."):
            return None
        return token_from_row(row), user_from_row(user)

    def token_touch_due(self, token: ApiToken) -> bool:
        """True when `token`'s last_used_at is unset or older than TOUCH_EVERY."""
        last = token.last_used_at
        return last is None or self._clock() - last >= TOUCH_EVERY

    def touch_token(self, ref: str) -> None:
        """Record that the token was just used. Not audited: it is no change."""
        number = parse_id(ref, "token")
        if number is None:
            raise BadRequest(f"{ref[:80]!r} is not a token id (token-7)")
        with self._lock:
            self._conn.execute(
                "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (self._now(), number)
            )

    def verify_token(self, token: object) -> User | None:
        """The enabled user a token stands for, or None (see find_token); records
        the use. For a writable store; am's service uses find_token and
        touch_token on its two connections."""
        found = self.find_token(token)
        if found is None:
            return None
        api_token, user = found
        if self.token_touch_due(api_token):
            self.touch_token(api_token.id)
        return user


__all__ = ["TITLE_MAX", "TOKENS_PER_USER_MAX", "TokensMixin", "token_hash"]
