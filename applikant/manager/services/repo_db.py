"""`am_repo_db`: repositories, permissions, protected branches, access decisions,
the audit log and the dashboard's figures.

Methods (args is one map; `actor` as in am_user_db):

| method | args | result | who |
|---|---|---|---|
| check_access | user (None: anonymous), repo, access, audit? | {allowed, reason, level} | system, or the user asking for themself |
| list_readable | user (None: anonymous), limit?, cursor? | page of {repo, level, is_public, description, default_branch} | system, the user |
| create_repo | path, description?, is_public?, default_branch? | Repo | admins; users under their login or their groups |
| get_repo | repo | Repo | readers (others: not found) |
| list_repos | owner?, visible_to?, public_only?, q?, newest_first?, limit?, cursor? | page of Repo | admins all (or what visible_to can read); users what they can read |
| update_repo | repo, description?, is_public?, default_branch? | Repo | repo admins |
| rename_repo | repo, new_path | Repo | repo admins, who may also create under the new owner |
| delete_repo | repo | Repo | repo admins |
| grant | repo, grantee, level | PermissionGrant | repo admins |
| revoke | repo, grantee | None | repo admins |
| list_grants | repo | [PermissionGrant] | repo admins |
| protect_branch | repo, pattern, admins_only? | ProtectedBranch | repo admins |
| unprotect_branch | repo, pattern | None | repo admins |
| list_protected | repo | [ProtectedBranch] | readers |
| query_audit | query: {actor?, action?, repo?, since?, until?, limit?, cursor?} | page of AuditEntry | admins; repo admins with query.repo |
| recent_pushes | limit? | [AuditEntry] | anyone (only pushes to repos they can read) |
| counts | pushes? (false: not counted, null) | Counts | site-wide for admins; scoped to what they may read for others |

check_access answers on the trio thread from the read-only connection: it is
the call every clone and push waits for, and it is benchmarked (bench.manager).
With `audit: true` (af for SSH, aw for HTTP clones with credentials), a denial
is also recorded as `access.denied` (actor: the user or `anonymous`; repo;
details user, access, reason; node: the caller) before the answer goes back;
an allowed call, or one without `audit`, writes nothing.

Lists answer one page, `{items, next, total}`: `next` is the cursor to pass
for the page after (None after the last); `total` only when it was free
(applikant.manager.store.paging).

The models of the args and answers are applikant.schema.repos (AM_REPO_DB).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from applikant.logs import EventLog
from applikant.manager.errors import BadRequest, Forbidden, ServiceError
from applikant.manager.services.base import Service, dump
from applikant.manager.store import Store
from applikant.manager.store.paging import Page
from applikant.node.node import CallContext
from applikant.schema import repos as s
from applikant.schema.base import SYSTEM

log = EventLog("am")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(text: str, limit: int) -> str:
    """`text` fit for the audit log: control characters escaped, at most `limit` long."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)[:limit]


def _readable(store: Store, user: str | None, limit: int, cursor: str | None) -> Page[Any]:
    """A page of the repositories `user` can read, with the level they have."""
    if user is None:
        page = store.repos.page(public_only=True, limit=limit, cursor=cursor)
    else:
        page = store.repos.page(visible_to=user, limit=limit, cursor=cursor)
    out = []
    for repo in page.items:
        decision = store.access.check(user, repo["full_name"], "read")
        if decision.allowed:
            out.append(
                {
                    "repo": repo["full_name"],
                    "level": decision.level,
                    "is_public": repo["is_public"],
                    "description": repo["description"],
                    "default_branch": repo["default_branch"],
                }
            )
    return Page(out, page.next, page.total)


class RepoDb(Service):
    NAME = "am_repo_db"
    SCHEMA = s.AM_REPO_DB

    # ---- decisions ----------------------------------------------------------

    async def check_access(self, ctx: CallContext, req: s.CheckAccess) -> Any:
        if req.actor != SYSTEM:
            actor = self.m.actor(req.actor)
            if not actor.is_admin and req.user != actor.id:
                raise Forbidden(f"{actor.login} may ask about their own access only")
        decision = self.m.reader.access.check(req.user, req.repo, req.access)
        if req.audit and not decision.allowed:
            await self._audit_denial(req, decision, ctx.caller)
        return {
            "allowed": decision.allowed,
            "reason": decision.reason,
            "level": decision.level,
            "repo": decision.repo,
        }

    async def _audit_denial(
        self, req: s.CheckAccess, decision: s.AccessDecision, node: str
    ) -> None:
        """Record a denied attempt; the denial stands even if it cannot be recorded."""
        try:
            repo = self.m.reader.repos.get(req.repo).full_name
        except ServiceError:
            repo = _printable(req.repo.removesuffix(".git"), 300)
        user = "anonymous" if req.user is None else _printable(req.user, 128)
        if req.user is not None and not req.user.startswith("user-"):
            try:  # a login: the log names accounts by id, as everywhere else
                user = self.m.reader.users.get(req.user).id
            except ServiceError:
                pass
        try:
            await self.m.write(
                self.m.writer.audit.record,
                "access.denied",
                actor=user,
                node=node,
                repo=repo,
                details={"user": user, "access": req.access, "reason": decision.reason},
            )
        except ServiceError as exc:
            log.warning("access_denied_not_recorded", repo=repo, reason=exc.message)
        log.info("access_denied", repo=repo, user=user, access=req.access, peer=node)

    async def list_readable(self, ctx: CallContext, req: s.ListReadable) -> Any:
        actor = self.m.actor(req.actor)
        if not actor.is_admin and req.user != actor.id:
            raise Forbidden(f"{actor.login} may list their own repositories only")
        page = await self.m.read_page(
            lambda store: partial(_readable, store, req.user), req.limit, cursor=req.cursor
        )
        return dump(page)

    # ---- repositories -------------------------------------------------------

    async def create_repo(self, ctx: CallContext, req: s.CreateRepo) -> Any:
        self.m.require_namespace(self.m.actor(req.actor), req.path)
        repo, _ = await self.m.write(
            self.m.writer.repos.create,
            req.path,
            actor=req.recorded_actor,
            node=ctx.caller,
            description=req.description,
            is_public=req.is_public,
            default_branch=req.default_branch,
        )
        return dump(repo)

    async def get_repo(self, ctx: CallContext, req: s.RepoRef) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "read")
        return dump(self.m.reader.repos.get(req.repo))

    async def list_repos(self, ctx: CallContext, req: s.ListRepos) -> Any:
        actor = self.m.actor(req.actor)
        visible_to = req.visible_to if actor.is_admin else actor.id
        # Plain dicts from the rows: no model per repository (see Repos.page).
        page = await self.m.read_page(
            lambda store: store.repos.page,
            req.limit,
            scan=req.q is not None,
            cursor=req.cursor,
            owner=req.owner,
            visible_to=visible_to,
            public_only=req.public_only,
            q=req.q,
            newest_first=req.newest_first,
        )
        return dump(page)

    async def update_repo(self, ctx: CallContext, req: s.UpdateRepo) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "admin")
        repo, _ = await self.m.write(
            self.m.writer.repos.update,
            req.repo,
            actor=req.recorded_actor,
            node=ctx.caller,
            description=req.description,
            is_public=req.is_public,
            default_branch=req.default_branch,
        )
        return dump(repo)

    async def rename_repo(self, ctx: CallContext, req: s.RenameRepo) -> Any:
        actor = self.m.actor(req.actor)
        self.m.require_repo(actor, req.repo, "admin")
        self.m.require_namespace(actor, req.new_path)
        repo, _ = await self.m.write(
            self.m.writer.repos.rename,
            req.repo,
            req.new_path,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        return dump(repo)

    async def delete_repo(self, ctx: CallContext, req: s.DeleteRepo) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "admin")
        repo, _ = await self.m.write(
            self.m.writer.repos.delete, req.repo, actor=req.recorded_actor, node=ctx.caller
        )
        return dump(repo)

    # ---- permissions and protection -----------------------------------------

    async def grant(self, ctx: CallContext, req: s.Grant) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "admin")
        grant, _ = await self.m.write(
            self.m.writer.access.grant,
            req.repo,
            req.grantee,
            req.level,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        return dump(grant)

    async def revoke(self, ctx: CallContext, req: s.Revoke) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "admin")
        await self.m.write(
            self.m.writer.access.revoke,
            req.repo,
            req.grantee,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        return None

    async def list_grants(self, ctx: CallContext, req: s.RepoRef) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "admin")
        return dump(self.m.reader.access.grants(req.repo))

    async def protect_branch(self, ctx: CallContext, req: s.Protect) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "admin")
        rule, _ = await self.m.write(
            self.m.writer.branches.protect,
            req.repo,
            req.pattern,
            actor=req.recorded_actor,
            node=ctx.caller,
            admins_only=req.admins_only,
        )
        return dump(rule)

    async def unprotect_branch(self, ctx: CallContext, req: s.Unprotect) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "admin")
        await self.m.write(
            self.m.writer.branches.unprotect,
            req.repo,
            req.pattern,
            actor=req.recorded_actor,
            node=ctx.caller,
        )
        return None

    async def list_protected(self, ctx: CallContext, req: s.RepoRef) -> Any:
        self.m.require_repo(self.m.actor(req.actor), req.repo, "read")
        return dump(self.m.reader.branches.rules(req.repo))

    # ---- audit and figures --------------------------------------------------

    async def query_audit(self, ctx: CallContext, req: s.QueryAudit) -> Any:
        actor = self.m.actor(req.actor)
        if not actor.is_admin:
            if req.query.repo is None:
                raise Forbidden(
                    f"{actor.login} may read the audit log of repositories "
                    "they administer only (give a repository)"
                )
            self.m.require_repo(actor, req.query.repo, "admin")
        if req.query.limit < 1:
            raise BadRequest(f"{self.where(ctx)}: field 'query.limit' must be at least 1")
        query = req.query.model_dump()
        page = await self.m.read_page(
            lambda store: store.audit.page, query.pop("limit"), scan=True, **query
        )
        return dump(page)

    async def recent_pushes(self, ctx: CallContext, req: s.RecentPushes) -> Any:
        actor = self.m.actor(req.actor)
        entries = self.m.reader.audit.recent_pushes(req.limit)
        if not actor.is_admin:
            entries = [
                e
                for e in entries
                if e.repo is not None
                and self.m.reader.access.check(actor.id, e.repo, "read").allowed
            ]
        return dump(entries)

    async def counts(self, ctx: CallContext, req: s.CountsQuery) -> Any:
        actor = self.m.actor(req.actor)
        if actor.is_admin:
            return dump(self.m.reader.audit.counts(pushes=req.pushes))
        if not req.pushes:  # a few capped index ranges: less than the hop to a thread
            return dump(self.m.reader.audit.counts_for(actor.id, pushes=False))
        return dump(await self.m.bulk_read(self.m.bulk.audit.counts_for, actor.id))
