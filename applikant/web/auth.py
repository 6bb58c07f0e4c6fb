"""Who is asking: a session cookie, an API token, or HTTP Basic (password or token).

`Auth.viewer(request)` answers for pages and the API; `Auth.from_headers`
serves the git endpoint (no cookies there). API tokens and sessions are am's:
aw asks `verify_token` / `am_sessions.resolve` and keeps nothing of them, so
every aw agrees and a session ended anywhere (logout, a password change, an
account disabled, "log out everywhere") is ended everywhere at once. The
cookie holds only the session's random secret (and the form's CSRF token).

Passwords are checked by am (`verify_password`, or `am_sessions.login` for the
login form) behind the `Throttle`: an attempt is counted per login and per
client address *before* am is asked, so guesses sent at the same moment are
held to the same limits as guesses sent one by one. At most
`PASSWORD_CHECKS` checks run at once; a request that finds them all busy for
`BUSY_WAIT` seconds, or that am answers too slowly, gets 429 with Retry-After
rather than queueing up or a 503: a login flood cannot overwhelm am (am not
running at all is still a 503 that says so).

A password change, a new API token, and an admin setting a password ask for
proof that the user knows their password (`confirm_recent`): HTTP Basic with the
password proves it on the request itself; a session proves it when its login
(or a confirmation since) is younger than `reauth_window`; otherwise the
current password must be given. A stolen cookie or token therefore cannot
take the account over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import trio

from .am import Am, AmError
from .security import Reservation, Throttle, Throttled, looks_like_token, parse_basic, parse_bearer

__all__ = ["Auth", "AuthError", "Lifetimes", "Viewer"]

#: Password checks aw asks am for at once; more wait up to BUSY_WAIT, then 429.
PASSWORD_CHECKS = 8
BUSY_WAIT = 2.0
#: Retry-After when am could not check a password.
AM_BUSY_RETRY = 5.0


class AuthError(Exception):
    """Credentials were given and are wrong (401), a proof of the password is
    missing (403), or attempts are throttled or cannot be checked now (429)."""

    def __init__(self, status: int, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Viewer:
    """The requesting user (None: anonymous), how they proved it, and their
    session (am's, for `via == "session"`)."""

    user: dict[str, Any] | None
    via: str = ""  # session, token, password or ""
    session: dict[str, Any] | None = None

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


@dataclass(frozen=True)
class Lifetimes:
    """`[aw]`'s session settings, in seconds."""

    idle: int = 7 * 24 * 3600  # unused this long, a session ends
    max_age: int = 14 * 24 * 3600  # a session ends this long after its login, whatever
    reauth_window: int = 600  # a login younger than this proves the password


class Auth:
    def __init__(self, am: Am, throttle: Throttle, lifetimes: Lifetimes = Lifetimes()) -> None:
        self.am = am
        self.throttle = throttle
        self.lifetimes = lifetimes
        self._checks = trio.CapacityLimiter(PASSWORD_CHECKS)

    # ---- passwords ----------------------------------------------------------

    def _reserve(self, *keys: str) -> Reservation:
        try:
            return self.throttle.reserve(*keys)
        except Throttled as exc:
            raise AuthError(429, f"too many failed attempts; {exc}", exc.wait) from None

    async def _ask(self, service: str, method: str, args: dict[str, Any]) -> Any:
        """am's answer to a password check, at most PASSWORD_CHECKS at once;
        AuthError(429) when none is free within BUSY_WAIT or am cannot answer."""
        waiting = True
        with trio.move_on_after(BUSY_WAIT):
            await self._checks.acquire()
            waiting = False
        if waiting:
            raise AuthError(429, "too many logins at once; try again in a moment", BUSY_WAIT)
        try:
            return await self.am.call(service, method, args)
        except AmError as exc:
            if exc.kind != "timeout":
                raise  # a refusal, or am away (503: it says so)
            raise AuthError(
                429, "the password cannot be checked now (am is busy); try again", AM_BUSY_RETRY
            ) from None
        finally:
            self._checks.release()

    async def _checked(
        self, keys: tuple[str, ...], service: str, method: str, args: dict[str, Any]
    ) -> Any:
        """am's answer to a password check (None: wrong), counted by the throttle."""
        attempt = self._reserve(*keys)
        try:
            found = await self._ask(service, method, args)
        except BaseException:
            attempt.cancel()  # nothing was checked: it does not count
            raise
        if found is None:
            attempt.failed()
            raise AuthError(401, "wrong login or password")
        attempt.succeeded(keys[0])
        return found

    @staticmethod
    def _keys(login: str, client: str) -> tuple[str, str]:
        return (f"login:{login.lower()[:100]}", f"addr:{client}")

    async def password(self, login: str, password: str, client: str) -> dict:
        """The user for this login and password; AuthError(401/429) otherwise."""
        user: dict = await self._checked(
            self._keys(login, client),
            "am_user_db",
            "verify_password",
            {"login": login, "password": password},
        )
        return user

    async def login(self, login: str, password: str, client: str, user_agent: str) -> dict:
        """A new session (`{session: {..., secret}, user}`) for this login and
        password; AuthError(401/429) otherwise."""
        made: dict = await self._checked(
            self._keys(login, client),
            "am_sessions",
            "login",
            {
                "login": login,
                "password": password,
                "address": client[:64],
                "user_agent": user_agent[:4096],
                "idle": self.lifetimes.idle,
                "max_age": self.lifetimes.max_age,
            },
        )
        return made

    async def token(self, token: str, client: str) -> dict:
        attempt = self._reserve(f"addr:{client}")
        try:
            user = await self.am.verify_token(token) if looks_like_token(token) else None
        except BaseException:
            attempt.cancel()
            raise
        if user is None:
            attempt.failed()
            raise AuthError(401, "the API token is unknown or revoked")
        attempt.cancel()  # a good token says nothing about the address's guesses
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

    # ---- sessions -----------------------------------------------------------

    async def session_viewer(self, cookie: dict, client: str = "") -> Viewer:
        """The viewer the cookie's session stands for; ANONYMOUS (and the cookie
        emptied) when it names none that is alive."""
        viewer, _ = await self.session_repo(cookie, client)
        return viewer

    async def session_repo(
        self, cookie: dict, client: str = "", repo: str = "", access: str = "read"
    ) -> tuple[Viewer, dict | None]:
        """`session_viewer`, and with `repo` am's {decision, repo} for that
        viewer asked in the same call (None: anonymous, ask for yourself)."""
        secret = cookie.get("sid")
        if not isinstance(secret, str):
            if "uid" in cookie:
                cookie.clear()  # a cookie from before sessions were kept in am
            return ANONYMOUS, None
        if repo:
            found = await self.am.resolve_session_repo(secret, client[:64], repo, access)
        else:
            found = await self.am.resolve_session(secret, client[:64])
        if found is None:
            cookie.clear()
            return ANONYMOUS, None
        return Viewer(found["user"], "session", found["session"]), found

    async def start_session(self, user: str, client: str, user_agent: str) -> str:
        """A new session for `user` (after its password changed); its secret."""
        made = await self.am.start_session(
            user,
            address=client[:64],
            user_agent=user_agent[:4096],
            idle=self.lifetimes.idle,
            max_age=self.lifetimes.max_age,
        )
        secret: str = made["secret"]
        return secret

    def recent(self, viewer: Viewer) -> bool:
        """Whether the viewer's session proved the password within the window."""
        if viewer.session is None:
            return False
        proved = datetime.fromisoformat(viewer.session["authenticated_at"])
        age = (datetime.now(UTC) - proved).total_seconds()
        return age < self.lifetimes.reauth_window

    async def confirm_recent(self, viewer: Viewer, password: str | None, client: str) -> None:
        """Refuse (AuthError 403, or 401/429 from the check) unless the viewer
        proved their password on this request, recently in this session, or
        with `password` now; see the module docstring."""
        if viewer.user is None:
            raise AuthError(401, "please log in")
        if viewer.via == "password":
            return
        if password:
            try:
                await self.password(viewer.login, password, client)
            except AuthError as exc:
                if exc.status != 401:
                    raise
                raise AuthError(403, "the current password is wrong") from None
            if viewer.session is not None:
                await self.am.confirm_session(viewer.session["id"])
            return
        if viewer.via == "session" and self.recent(viewer):
            return
        minutes = max(1, self.lifetimes.reauth_window // 60)
        raise AuthError(
            403,
            "confirm this with your current password (current_password): your login is "
            f"older than {minutes} minutes"
            if viewer.via == "session"
            else "confirm this with your current password (current_password)",
        )
