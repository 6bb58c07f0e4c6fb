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
from datetime import timedelta

from applikant.manager.errors import BadRequest, Conflict, NotFound
from applikant.manager.names import check_text
from applikant.manager.store.core import Part, Query, Row
from applikant.manager.store.rows import USER_SELECT, parse_id, user_row
from applikant.manager.store.users import user_from_row
from applikant.schema.users import TOKEN_TITLE_MAX as TITLE_MAX
from applikant.schema.users import ApiToken, NewApiToken, User

TOKENS_PER_USER_MAX = 100
TOKEN_MAX = 512
SECRET_BYTES = 32
TOUCH_EVERY = timedelta(seconds=60)

TOKEN_SELECT = (
    "SELECT id, user_id, title, token_hash, created_at, last_used_at,"
    " (SELECT name FROM owners WHERE owners.id = api_tokens.user_id) AS login FROM api_tokens"
)


def token_hash(token: str) -> str:
    """The hex SHA-256 of a token: what the table keeps and looks tokens up by."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_from_row(row: Row) -> ApiToken:
    return ApiToken(
        id=f"token-{row['id']}",
        user=f"user-{row['user_id']}",
        login=row["login"],
        title=row["title"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
    )


def _check_title(title: object) -> str:
    if not isinstance(title, str) or not title.strip():
        raise BadRequest("a token needs a title, saying what uses it")
    return check_text(title.strip(), "token title", TITLE_MAX)


def _token_row(q: Query, ref: object) -> Row:
    number = parse_id(ref, "token") if isinstance(ref, str) else None
    if number is None:
        raise BadRequest(f"{str(ref)[:80]!r} is not a token id (token-7)")
    row = q.one(TOKEN_SELECT + " WHERE id = ?", (number,))
    if row is None:
        raise NotFound(f"no token {ref}")
    return row


class Tokens(Part):
    """`store.tokens`: personal API tokens."""

    def create(self, user: str, title: str, *, actor: str, node: str | None = None) -> NewApiToken:
        """Make a new token for `user`; the answer is the only place its secret appears.

        Raises BadRequest for a missing or over-long title, NotFound for an unknown
        user, Conflict when the user already has TOKENS_PER_USER_MAX tokens.
        """
        title = _check_title(title)
        with self._core.write(actor, node) as tx:
            owner = user_row(tx, user)
            count = tx.scalar("SELECT count(*) FROM api_tokens WHERE user_id = ?", (owner["id"],))
            if count >= TOKENS_PER_USER_MAX:
                raise Conflict(
                    f"{owner['login']} has {count} tokens already; revoke some before making more"
                )
            uid = f"user-{owner['id']}"
            secret = f"{uid}.{secrets.token_urlsafe(SECRET_BYTES)}"
            number = tx.insert(
                "INSERT INTO api_tokens (user_id, title, token_hash, created_at)"
                " VALUES (?, ?, ?, ?)",
                (owner["id"], title, token_hash(secret), tx.now),
            )
            token_id = f"token-{number}"
            tx.audit("token.create", user=uid, login=owner["login"], token=token_id, title=title)
            made = token_from_row(_token_row(tx, token_id))
            return NewApiToken(**made.model_dump(), token=secret)

    def of(self, user: str) -> list[ApiToken]:
        """The tokens of one user (no secrets), oldest first. Raises NotFound."""
        with self._core.read() as q:
            owner = user_row(q, user)
            rows = q.all(TOKEN_SELECT + " WHERE user_id = ? ORDER BY id", (owner["id"],))
        return [token_from_row(row) for row in rows]

    def revoke(
        self, ref: str, *, actor: str, node: str | None = None, user: str | None = None
    ) -> ApiToken:
        """Delete the token `token-7` at once; return what was revoked.

        With `user`, the token must belong to that user: someone else's token is
        reported as not found, which reveals nothing about it.
        """
        with self._core.write(actor, node) as tx:
            row = _token_row(tx, ref)
            if user is not None:
                owner_row = user_row(tx, user)
                if owner_row["id"] != row["user_id"]:
                    raise NotFound(f"{owner_row['login']} has no token {ref}")
            else:
                owner_row = user_row(tx, f"user-{row['user_id']}")
            revoked = token_from_row(row)
            tx.run("DELETE FROM api_tokens WHERE id = ?", (row["id"],))
            tx.audit(
                "token.revoke",
                user=revoked.user,
                login=owner_row["login"],
                token=revoked.id,
                title=revoked.title,
            )
            return revoked

    def find(self, token: object) -> tuple[ApiToken, User] | None:
        """The token and its enabled owner for a secret, or None; nothing is written.

        Unknown, malformed and revoked tokens, a prefix that names another user,
        and tokens of disabled accounts are all None.
        """
        if not isinstance(token, str) or not 0 < len(token) <= TOKEN_MAX:
            return None
        digest = token_hash(token)
        with self._core.read() as q:
            row = q.one(TOKEN_SELECT + " WHERE token_hash = ?", (digest,))
            if row is None:
                return None
            user = q.one(USER_SELECT + " WHERE u.id = ?", (row["user_id"],))
        if user is None or user["disabled"] or not token.startswith(f"user-{row['user_id']}."):
            return None
        return token_from_row(row), user_from_row(user)

    def touch_due(self, token: ApiToken) -> bool:
        """True when `token`'s last_used_at is unset or older than TOUCH_EVERY."""
        last = token.last_used_at
        return last is None or self._core.clock() - last >= TOUCH_EVERY

    def touch(self, ref: str) -> None:
        """Record that the token was just used. Not audited: it is no change."""
        number = parse_id(ref, "token")
        if number is None:
            raise BadRequest(f"{ref[:80]!r} is not a token id (token-7)")
        self._core.untracked(
            "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (self._core.now(), number)
        )

    def verify(self, token: object) -> User | None:
        """The enabled user a token stands for, or None (see find); records the
        use. For a writable store; am's service uses find and touch on its two
        connections."""
        found = self.find(token)
        if found is None:
            return None
        api_token, user = found
        if self.touch_due(api_token):
            self.touch(api_token.id)
        return user


__all__ = ["TITLE_MAX", "TOKENS_PER_USER_MAX", "Tokens", "token_hash"]
