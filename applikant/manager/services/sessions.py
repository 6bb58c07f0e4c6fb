"""`am_sessions`: web sessions, kept in am so that every aw agrees on them.

Methods (args is one map; `actor` as in am_user_db):

| method | args | result | who |
|---|---|---|---|
| login | login, password, address?, user_agent?, idle?, max_age? | {session + secret, user} or None | system (aw's login form) |
| start | user, address?, user_agent?, idle?, max_age? | Session + secret | system (aw, after a password change) |
| resolve | secret, address? | {session, user} or None | system (aw, on every request with a cookie) |
| resolve_repo | secret, address?, repo, access? | {session, user, decision, repo} or None | system (aw, on a repository's page) |
| confirm | session | Session | system (aw, after the user proved their password again) |
| list | user | [Session] | admins, the user |
| end | session, user? | Session | admins, the session's user |
| end_all | user, keep? | {ended} | admins, the user |

`login` checks the password and starts the session in one call: wrong logins,
disabled accounts and unknown users are all None (aw counts them, in its
throttle). `resolve` is the hot path: an indexed lookup on the read
connection; the session's last use (and address) is written off the loop at
most once a minute. Ended, expired and idle sessions, and sessions of disabled
accounts, resolve to None. A password change and disabling an account end all
of the user's sessions (store/users.py); aw starts a fresh one for the browser
that changed its own password.

The models of the args and answers are applikant.schema.sessions (AM_SESSIONS).
"""

from __future__ import annotations

from typing import Any

from applikant.manager.errors import Forbidden
from applikant.manager.runtime import Actor
from applikant.manager.services.base import Service, dump
from applikant.node.node import CallContext
from applikant.schema import sessions as s
from applikant.schema.users import User


class SessionsService(Service):
    NAME = "am_sessions"
    SCHEMA = s.AM_SESSIONS

    def _system(self, actor: str, what: str) -> None:
        if not self.m.actor(actor).is_system:
            raise Forbidden(f"only the cluster's own services {what}")

    async def _start(self, ctx: CallContext, user: str, req: s.Lifetime) -> s.NewSession:
        # Below the disk reserve too: logging in is how people read (and how an
        # admin sees the disk is full), not new work.
        made, _ = await self.m.write_reserved(
            self.m.writer.sessions.start,
            user,
            actor=user,
            node=ctx.caller,
            address=req.address,
            user_agent=req.user_agent,
            idle=req.idle,
            max_age=req.max_age,
        )
        return made

    async def login(self, ctx: CallContext, req: s.Login) -> Any:
        self._system(req.actor, "log users in")
        user = await self.m.hash_work(self.m.writer.users.verify_password, req.login, req.password)
        if user is None:
            return None
        made = await self._start(ctx, user.id, req)
        return dump(s.LoggedIn(session=made, user=user))

    async def start(self, ctx: CallContext, req: s.Start) -> Any:
        self._system(req.actor, "start sessions")
        user = self.m.reader.users.get(req.user)
        return dump(await self._start(ctx, user.id, req))

    async def resolve(self, ctx: CallContext, req: s.Resolve) -> Any:
        self._system(req.actor, "resolve sessions")
        found = await self._resolve(req)
        return None if found is None else dump(s.SessionOf(session=found[0], user=found[1]))

    async def resolve_repo(self, ctx: CallContext, req: s.ResolveRepo) -> Any:
        """`resolve`, then check_access and get_repo for the session's user: the
        three questions of every repository page in one call, all answered now."""
        self._system(req.actor, "resolve sessions")
        found = await self._resolve(req)
        if found is None:
            return None
        session, user = found
        decision = self.m.reader.access.check(user.id, req.repo, req.access)
        repo = self.m.reader.repos.get(req.repo) if decision.allowed else None
        return dump(s.SessionRepo(session=session, user=user, decision=decision, repo=repo))

    async def _resolve(self, req: s.Resolve) -> tuple[s.Session, User] | None:
        found = self.m.reader.sessions.find(req.secret)
        if found is None:
            return None
        session, user = found
        if self.m.reader.sessions.touch_due(session, req.address):
            await self.m.write_reserved(self.m.writer.sessions.touch, session.id, req.address)
        return session, user

    async def confirm(self, ctx: CallContext, req: s.SessionRef) -> Any:
        self._system(req.actor, "confirm sessions")
        session, _ = await self.m.write_reserved(self.m.writer.sessions.confirm, req.session)
        return dump(session)

    async def list(self, ctx: CallContext, req: s.ListSessions) -> Any:
        self.m.require_self_or_admin(self.m.actor(req.actor), req.user, "list the sessions")
        return dump(self.m.reader.sessions.of(req.user))

    async def end(self, ctx: CallContext, req: s.EndSession) -> Any:
        actor = self.m.actor(req.actor)
        owner = self._owner(actor, req.user, "end sessions")
        ended, _ = await self.m.write(
            self.m.writer.sessions.end, req.session, actor=req.actor, node=ctx.caller, user=owner
        )
        return dump(ended)

    async def end_all(self, ctx: CallContext, req: s.EndAll) -> Any:
        self.m.require_self_or_admin(self.m.actor(req.actor), req.user, "end the sessions")
        ended, _ = await self.m.write(
            self.m.writer.sessions.end_all,
            req.user,
            actor=req.actor,
            node=ctx.caller,
            keep=req.keep,
        )
        return {"ended": ended}

    def _owner(self, actor: Actor, user: str | None, what: str) -> str | None:
        """Whose session may be ended: anyone's for admins (or `user`'s), else the
        actor's own (someone else's session is then "not found")."""
        if actor.is_admin:
            return user
        if user is not None and not self.m.is_self(actor, user):
            raise Forbidden(f"{actor.login} may {what} of their own account only")
        return actor.id
