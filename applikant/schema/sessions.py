"""`am_sessions`: web sessions kept in am, so that every aw agrees on them; and
the REST bodies that ask for the current password.

A session is what a browser's cookie stands for: the cookie holds a random
secret, am keeps its SHA-256 (`session-7` is its id). A session ends at logout,
when its user ends it (one, or all but the current: "log out everywhere"),
when the password changes (all of the user's), when the account is disabled
(all), and by itself after `idle_timeout` seconds unused or at `expires_at`.
`authenticated_at` is when the user last proved their password in it (the
login, or a confirmation since): aw asks again for the password before a
password change or a new API token when that is longer ago than its window.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from .base import AccessLevel, Body, Mutation, Op, Read, Result
from .repos import AccessDecision, Repo
from .users import NewToken, User, UserPatch

#: The longest a session may live, and be idle, whatever aw asks (in seconds).
MAX_AGE_LIMIT = 366 * 24 * 3600
ADDRESS_MAX = 64  # an IPv6 address with a zone fits
USER_AGENT_MAX = 256  # longer ones are cut


# ---- results ------------------------------------------------------------------


class Session(Result):
    """A session as its user sees it in the list of their sessions."""

    id: str
    user: str
    created_at: datetime
    last_seen_at: datetime
    authenticated_at: datetime
    expires_at: datetime
    idle_timeout: int  # seconds unused after which it ends
    address: str  # the client's address when last seen
    user_agent: str  # the browser that logged in


class NewSession(Session):
    """The answer to start: the only time the secret (the cookie's value) is shown."""

    secret: str = Field(repr=False)


class SessionOf(Result):
    """A session and its (enabled) user: what a cookie stands for."""

    session: Session
    user: User


class SessionRepo(SessionOf):
    """A session and its user, and that user's access to one repository: a
    repository page's questions in one call. `repo` only when allowed."""

    decision: AccessDecision
    repo: Repo | None = None


class LoggedIn(Result):
    """The answer to login: the new session (with its secret) and its user."""

    session: NewSession
    user: User


class Ended(Result):
    ended: int


# ---- bodies: the REST API's changes that need the current password -------------


class Reauth(Body):
    """The caller's current password, for the changes that ask for it when the
    request itself did not prove it (HTTP Basic with the password does; a token
    or a session whose login is older than aw's window does not)."""

    current_password: str | None = Field(default=None, max_length=1024, repr=False)


class UserPatchBody(UserPatch, Reauth):
    """`PATCH /api/users/{id}`; a new `password` needs `current_password` (see Reauth)."""


class NewTokenBody(NewToken, Reauth):
    """`POST /api/users/{id}/tokens`; needs `current_password` (see Reauth)."""


# ---- requests of am_sessions ------------------------------------------------------


class Lifetime(Read):
    address: str = Field(default="", max_length=ADDRESS_MAX)
    user_agent: str = Field(default="", max_length=4096)  # cut to USER_AGENT_MAX
    idle: int = Field(default=7 * 24 * 3600, ge=60, le=MAX_AGE_LIMIT)
    max_age: int = Field(default=14 * 24 * 3600, ge=60, le=MAX_AGE_LIMIT)


class Login(Lifetime):
    login: str = Field(max_length=200)
    password: str = Field(max_length=1024, repr=False)


class Start(Lifetime):
    user: str


class Resolve(Read):
    secret: str = Field(max_length=512, repr=False)
    address: str = Field(default="", max_length=ADDRESS_MAX)


class ResolveRepo(Resolve):
    repo: str = Field(max_length=1024)
    access: AccessLevel = "read"


class SessionRef(Read):
    session: str


class ListSessions(Read):
    user: str


class EndSession(Mutation):
    session: str
    user: str | None = None  # the session must be this user's


class EndAll(Mutation):
    user: str
    keep: str | None = None  # a session id to keep (the caller's own)


AM_SESSIONS: dict[str, Op] = {
    "login": Op(Login, LoggedIn | None),
    "start": Op(Start, NewSession),
    "resolve": Op(Resolve, SessionOf | None),
    "resolve_repo": Op(ResolveRepo, SessionRepo | None),
    "confirm": Op(SessionRef, Session),
    "list": Op(ListSessions, list[Session]),
    "end": Op(EndSession, Session),
    "end_all": Op(EndAll, Ended),
}
"""Every method of am_sessions: its request model and its answer."""
