"""Who is asking: a session cookie, an API token, or HTTP Basic (password or token).

`Auth.viewer(request)` answers for pages and the API; `Auth.from_headers`
serves the git endpoint (no cookies there). API tokens are am's: aw asks
`verify_token` and keeps nothing of them. Passwords are checked by am
(`verify_password`) behind the `Throttle`, per login and per client address,
so guessing is slowed down whether it comes through the login form, the API
or git. A disabled account stops working at its next request: the session's
user is fetched from am every time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .am import Am, AmError
from .security import Throttle, looks_like_token, parse_basic, parse_bearer

__all__ = ["Auth", "AuthError", "Viewer"]


class AuthError(Exception):
    """Credentials were given and are wrong (401), or attempts are throttled (429)."""

    def __init__(self, status: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Viewer:
    """The requesting user (None: anonymous) and how they proved it."""

    user: dict[str, Any] | None
    via: str = ""  # session, token, password or ""

    @property
    def id(self) -> str | None:
        return self.user["id"] if self.user else None

    @property
    def login(self) -> str:
        return self.user["login"] if self.user else ""

    @property
    def is_admin(self) -> bool:
        return bool(self.user and self.user.get("is_admin"))


ANONYMOUS = Viewer(None)


class Auth:
    def __init__(self, am: Am, throttle: Throttle) -> None:
        self.am = am
        self.throttle = throttle

    async def password(self, login: str, password: str, client: str) -> dict:
        """The user for this login and password; AuthError(401/429) otherwise."""
        keys = (f"login:{login.lower()[:100]}", f"addr:{client}")
        wait = self.throttle.wait(*keys)
        if wait > 0:
            raise AuthError(429, f"too many failed logins; try again in {int(wait) + 1} s", wait)
        user = await self.am.verify_password(login, password)
        if user is None:
            self.throttle.failed(*keys)
            raise AuthError(401, "wrong login or password")
        self.throttle.succeeded(keys[0])
        return user

    async def token(self, token: str, client: str) -> dict:
        key = f"addr:{client}"
        wait = self.throttle.wait(key)
        if wait > 0:
            raise AuthError(429, f"too many failed attempts; try again in {int(wait) + 1} s", wait)
        user = await self.am.verify_token(token) if looks_like_token(token) else None
        if user is None:
            self.throttle.failed(key)
            raise AuthError(401, "the API token is unknown or revoked")
        return user

    async def from_headers(self, authorization: str, client: str) -> Viewer:
        """The viewer an Authorization header names; ANONYMOUS when there is none.

        Raises AuthError for credentials that are malformed or wrong.
        """
        if not authorization:
            return ANONYMOUS
        bearer = parse_bearer(authorization)
        if bearer is not None:
            return Viewer(await self.token(bearer, client), "token")
        basic = parse_basic(authorization)
        if basic is None:
            raise AuthError(401, "unsupported Authorization header; use Basic or Bearer")
        login, secret = basic
        if looks_like_token(secret):
            user = await self.token(secret, client)
            if login and login not in (user["login"], "token", "x-access-token"):
                raise AuthError(401, "that token belongs to another user")
            return Viewer(user, "token")
        return Viewer(await self.password(login, secret, client), "password")

    async def session_viewer(self, session: dict) -> Viewer:
        uid = session.get("uid")
        if not isinstance(uid, str):
            return ANONYMOUS
        try:
            user = await self.am.get_user(uid, uid)
        except AmError as exc:
            if exc.status == 404:
                session.clear()
                return ANONYMOUS
            raise
        if user.get("disabled"):
            session.clear()
            return ANONYMOUS
        return Viewer(user, "session")
