"""aw's only door to am: every call to am's services goes through `Am`.

The names and arguments of am's methods live here and nowhere else, and so does
the mapping of failures to HTTP: a typed refusal from am becomes `AmError` with
the status it deserves (`STATUS`), and am being down, not yet registered or too
slow becomes `AmError(503)` with a message that says so. Nothing else escapes:
pages and the API catch one exception type.

Results are plain dicts (am's models as JSON), as they came over the wire.
Lists come a page at a time: `{"items": [...], "next": cursor or None,
"total": n or None}` (applikant.manager.store.paging); `limit` and `cursor`
(the `next` of the page before) ask for one.

The link itself is the daemons' shared client (`applikant.amclient`): `Am.run`
keeps it open (dialling am every `retry` seconds while it is away, waiting for
its global names, following them to another node), so that the first request
after a restart of either side finds am without a delay.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import trio

from ..amclient import AmClient, AmRefused, AmUnavailable
from ..logs import EventLog
from ..node.node import Node

__all__ = ["STATUS", "Am", "AmError", "StaleToken", "TokenProof", "with_token"]

log = EventLog("aw")

USERS = "am_user_db"
SESSIONS = "am_sessions"
REPOS = "am_repo_db"
OBSERVER = "am_observer"
SYSTEM = "system"

#: am's error kinds and the HTTP status each one means.
STATUS = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "unavailable": 503,
    "no_such_method": 501,
}


class AmError(Exception):
    """am refused or could not answer; `status` for HTTP, `message` for people."""

    def __init__(self, status: int, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


def _refused(service: str, method: str, kind: str, message: str) -> AmError:
    """am's typed refusal as AmError (an unknown kind is a 500, and logged)."""
    status = STATUS.get(kind, 500)
    if status == 500:
        log.warning("am_error", service=service, method=method, kind=kind, message=message)
    return AmError(status, message, kind)


class StaleToken(Exception):
    """am says the API token of a `with_token` block no longer stands for the
    user it was taken for (revoked, disabled, another user, or changed)."""


@dataclass
class TokenProof:
    """An API token and the user it stood for when aw last checked it: aw's
    guess, which am checks again on every call made under `with_token`."""

    token: str
    user: dict[str, Any]
    checked: bool = False  # a call under it was answered for that very user


_proof: ContextVar[TokenProof | None] = ContextVar("aw_token_proof", default=None)


@contextmanager
def with_token(proof: TokenProof) -> Iterator[TokenProof]:
    """Calls in this block (and the tasks it starts) made as `proof.user` go
    with the token (`Am.call`)."""
    reset = _proof.set(proof)
    try:
        yield proof
    finally:
        _proof.reset(reset)


def _clean(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if v is not None}


class Am:
    """Calls to am on behalf of aw; `actor` is `user-N` of the logged-in user."""

    def __init__(
        self, node: Node, am_node: str | Sequence[str], *, timeout: float = 10.0, retry: float = 1.0
    ) -> None:
        self.node = node
        self.client = AmClient(node, am_node, component="aw", retry=retry, timeout=timeout)

    # ---- plumbing -----------------------------------------------------------

    @property
    def am_node(self) -> str:
        """The node that serves am now (the configured one until am is found)."""
        return self.client.am or self.client.am_node

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forever: keep the link to am (see `AmClient.run`)."""
        await self.client.run(task_status=task_status)

    async def call(
        self,
        service: str,
        method: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """am's reply; AmError for every failure (see the module docstring).

        Under `with_token(proof)`, a call whose actor is the proof's user goes
        as `as_token`: am checks the token and answers in one call, and
        StaleToken says the token no longer stands for that user."""
        proof = _proof.get()
        if proof is not None and args is not None and args.get("actor") == proof.user["id"]:
            try:
                got = await self._call(
                    USERS,
                    "as_token",
                    {"token": proof.token, "service": service, "method": method, "args": args},
                    timeout,
                )
            except AmError as exc:
                if exc.kind == "no_such_method":  # an am from before as_token
                    raise StaleToken() from None
                raise
            if not got["ran"] or got["user"] != proof.user:
                raise StaleToken()
            proof.checked = True
            if got.get("error"):
                kind, message = got["error"]
                raise _refused(service, method, kind, message)
            return got.get("answer")
        return await self._call(service, method, args or {}, timeout)

    async def _call(
        self, service: str, method: str, args: dict[str, Any], timeout: float | None
    ) -> Any:
        try:
            return await self.client.call(service, method, args, timeout=timeout)
        except AmRefused as exc:
            raise _refused(service, method, exc.kind, exc.message) from None
        except AmUnavailable as exc:
            if exc.reason == "not_running":
                message = f"{exc}, so this cannot be answered right now; try again in a moment"
            else:
                message = f"{exc}; try again in a moment"
            # "timeout": am is there but too slow (busy); callers may say so.
            kind = "timeout" if exc.reason == "timeout" else "unavailable"
            raise AmError(503, message, kind) from None

    # ---- users --------------------------------------------------------------
    # Every call names its actor: the logged-in user (`user-42`), whose rights am
    # checks, or `system` for aw's own questions (logins, access decisions) and
    # for anonymous visitors' reads of public data.

    async def verify_password(self, login: str, password: str) -> dict | None:
        return await self.call(USERS, "verify_password", {"login": login, "password": password})

    async def get_user(self, actor: str | None, user: str) -> dict:
        return await self.call(USERS, "get_user", {"user": user, "actor": _who(actor)})

    async def list_users(
        self,
        actor: str | None,
        *,
        q: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict:
        """A page of users by login; `q` searches logins and display names."""
        args = {"actor": _who(actor), "q": q or None, "limit": limit, "cursor": cursor}
        return await self.call(USERS, "list_users", _clean(args))

    async def add_user(self, actor: str, **fields: Any) -> dict:
        return await self.call(USERS, "add_user", {**_clean(fields), "actor": actor})

    async def update_user(self, actor: str, user: str, **fields: Any) -> dict:
        return await self.call(
            USERS, "update_user", {**_clean(fields), "user": user, "actor": actor}
        )

    async def set_disabled(self, actor: str, user: str, disabled: bool) -> dict:
        method = "disable_user" if disabled else "enable_user"
        return await self.call(USERS, method, {"user": user, "actor": actor})

    async def delete_user(self, actor: str, user: str, transfer_to: str | None = None) -> dict:
        """{user, transferred}: the account as it was, and its repositories' new names."""
        return await self.call(
            USERS, "delete_user", _clean({"user": user, "transfer_to": transfer_to, "actor": actor})
        )

    async def set_admin(self, actor: str, user: str, is_admin: bool) -> dict:
        return await self.call(
            USERS, "set_admin", {"user": user, "is_admin": is_admin, "actor": actor}
        )

    async def set_password(self, actor: str, user: str, password: str | None) -> None:
        await self.call(USERS, "set_password", {"user": user, "password": password, "actor": actor})

    # ---- sessions: am keeps them, so every aw agrees (applikant.schema.sessions) ----

    async def resolve_session(self, secret: str, address: str) -> dict | None:
        """{session, user} for a cookie's secret, or None (ended, expired...)."""
        return await self.call(SESSIONS, "resolve", {"secret": secret, "address": address})

    async def resolve_session_repo(
        self, secret: str, address: str, repo: str, access: str
    ) -> dict | None:
        """{session, user, decision, repo} for a cookie's secret and the access
        its user has to `repo` (the repository itself when allowed), or None."""
        args = {"secret": secret, "address": address, "repo": repo, "access": access}
        return await self.call(SESSIONS, "resolve_repo", args)

    async def start_session(self, user: str, **lifetime: Any) -> dict:
        """A new session (with its `secret`) for `user`: address, user_agent, idle, max_age."""
        return await self.call(SESSIONS, "start", {**lifetime, "user": user})

    async def confirm_session(self, session: str) -> dict:
        """Note that the user just proved their password in `session`."""
        return await self.call(SESSIONS, "confirm", {"session": session})

    async def list_sessions(self, actor: str, user: str) -> list[dict]:
        return await self.call(SESSIONS, "list", {"user": user, "actor": actor})

    async def end_session(self, actor: str, session: str, user: str | None = None) -> dict:
        return await self.call(
            SESSIONS, "end", _clean({"session": session, "user": user, "actor": actor})
        )

    async def end_sessions(self, actor: str, user: str, keep: str | None = None) -> int:
        """End every session of `user` but `keep`; how many ended."""
        found = await self.call(
            SESSIONS, "end_all", _clean({"user": user, "keep": keep, "actor": actor})
        )
        return int(found["ended"])

    # ---- keys ---------------------------------------------------------------

    async def list_keys(
        self, actor: str, user: str, *, limit: int = 100, cursor: str | None = None
    ) -> dict:
        """A page of `user`'s keys, oldest first."""
        return await self.call(
            USERS,
            "list_keys",
            _clean({"user": user, "actor": actor, "limit": limit, "cursor": cursor}),
        )

    async def get_key(self, actor: str, key: str) -> dict:
        return await self.call(USERS, "get_key", {"key": key, "actor": actor})

    async def add_key(self, actor: str, user: str, key: str, title: str | None) -> dict:
        return await self.call(
            USERS, "add_key", _clean({"user": user, "key": key, "title": title, "actor": actor})
        )

    async def remove_key(self, actor: str, key: str, user: str) -> dict | None:
        """Remove `key` only if it belongs to `user` (am checks both)."""
        return await self.call(USERS, "remove_key", {"key": key, "user": user, "actor": actor})

    async def update_key(self, actor: str, key: str, title: str) -> dict:
        """Retitle `key` (same id); am refuses another user's key unless `actor` is admin."""
        return await self.call(USERS, "update_key", {"key": key, "title": title, "actor": actor})

    # ---- API tokens: am keeps their hashes; a secret is shown once ------------

    async def create_token(self, actor: str, user: str, title: str) -> dict:
        """{id, user, title, created_at, last_used_at, token}; `token` only here."""
        return await self.call(
            USERS, "create_token", {"user": user, "title": title, "actor": actor}
        )

    async def list_tokens(self, actor: str, user: str) -> list[dict]:
        return await self.call(USERS, "list_tokens", {"user": user, "actor": actor})

    async def revoke_token(self, actor: str, user: str, token_id: str) -> None:
        await self.call(USERS, "revoke_token", {"token": token_id, "user": user, "actor": actor})

    async def verify_token(self, token: str) -> dict | None:
        """The enabled user `token` stands for, or None."""
        return await self.call(USERS, "verify_token", {"token": token})

    # ---- groups -------------------------------------------------------------

    async def list_groups(
        self, actor: str | None, *, limit: int = 100, cursor: str | None = None
    ) -> dict:
        """A page of groups by name, each with its members."""
        return await self.call(
            USERS, "list_groups", _clean({"actor": _who(actor), "limit": limit, "cursor": cursor})
        )

    async def groups_of(self, actor: str | None, user: str) -> list[str]:
        """The names of the groups `user` belongs to (one indexed lookup)."""
        return await self.call(USERS, "groups_of", {"user": user, "actor": _who(actor)})

    async def get_group(self, actor: str | None, group: str) -> dict:
        return await self.call(USERS, "get_group", {"group": group, "actor": _who(actor)})

    async def create_group(self, actor: str, name: str, description: str = "") -> dict:
        return await self.call(
            USERS, "create_group", {"name": name, "description": description, "actor": actor}
        )

    async def delete_group(self, actor: str, group: str) -> None:
        await self.call(USERS, "delete_group", {"group": group, "actor": actor})

    async def add_member(self, actor: str, group: str, user: str) -> dict:
        return await self.call(USERS, "add_member", {"group": group, "user": user, "actor": actor})

    async def remove_member(self, actor: str, group: str, user: str) -> dict:
        return await self.call(
            USERS, "remove_member", {"group": group, "user": user, "actor": actor}
        )

    # ---- repositories -------------------------------------------------------

    async def list_repos(
        self,
        actor: str | None,
        *,
        owner: str | None = None,
        q: str | None = None,
        newest_first: bool = False,
        limit: int = 100,
        cursor: str | None = None,
    ) -> dict:
        """A page of what `actor` may read (anonymous: the public ones): the
        site's by id, or `owner`'s by name; `q` searches."""
        args: dict[str, Any] = {
            "owner": owner,
            "q": q or None,
            "limit": limit,
            "cursor": cursor,
            "newest_first": newest_first or None,
        }
        if actor is None:
            args.update(public_only=True, actor=SYSTEM)
        else:
            args.update(visible_to=actor, actor=actor)
        return await self.call(REPOS, "list_repos", _clean(args))

    async def get_repo(self, actor: str | None, repo: str) -> dict:
        return await self.call(REPOS, "get_repo", {"repo": repo, "actor": _who(actor)})

    async def create_repo(self, actor: str, path: str, **fields: Any) -> dict:
        return await self.call(
            REPOS, "create_repo", {**_clean(fields), "path": path, "actor": actor}
        )

    async def update_repo(self, actor: str, repo: str, **fields: Any) -> dict:
        return await self.call(
            REPOS, "update_repo", {**_clean(fields), "repo": repo, "actor": actor}
        )

    async def rename_repo(self, actor: str, repo: str, new_path: str) -> dict:
        return await self.call(
            REPOS, "rename_repo", {"repo": repo, "new_path": new_path, "actor": actor}
        )

    async def delete_repo(self, actor: str, repo: str) -> dict:
        return await self.call(REPOS, "delete_repo", {"repo": repo, "actor": actor})

    async def check_access(
        self, user: str | None, repo: str, access: str, *, audit: bool = False
    ) -> dict:
        """{allowed, reason, level}; with `audit`, am records a denial (`access.denied`)."""
        args: dict[str, Any] = {"user": user, "repo": repo, "access": access}
        if audit:
            args["audit"] = True
        return await self.call(REPOS, "check_access", args)

    async def list_grants(self, actor: str, repo: str) -> list[dict]:
        return await self.call(REPOS, "list_grants", {"repo": repo, "actor": actor})

    async def grant(self, actor: str, repo: str, grantee: str, level: str) -> dict:
        return await self.call(
            REPOS, "grant", {"repo": repo, "grantee": grantee, "level": level, "actor": actor}
        )

    async def revoke(self, actor: str, repo: str, grantee: str) -> None:
        await self.call(REPOS, "revoke", {"repo": repo, "grantee": grantee, "actor": actor})

    async def list_protected(self, actor: str | None, repo: str) -> list[dict]:
        return await self.call(REPOS, "list_protected", {"repo": repo, "actor": _who(actor)})

    async def protect_branch(self, actor: str, repo: str, pattern: str, admins_only: bool) -> dict:
        return await self.call(
            REPOS,
            "protect_branch",
            {"repo": repo, "pattern": pattern, "admins_only": admins_only, "actor": actor},
        )

    async def unprotect_branch(self, actor: str, repo: str, pattern: str) -> None:
        await self.call(
            REPOS, "unprotect_branch", {"repo": repo, "pattern": pattern, "actor": actor}
        )

    # ---- audit, dashboard, cluster -------------------------------------------

    async def query_audit(self, actor: str, query: dict[str, Any]) -> dict:
        """A page of the entries matching `query` ({actor?, action?, repo?, since?,
        until?, limit?, cursor?}), newest first. The filters travel as one map,
        apart from the caller: the `actor` filter (whose entries) is not the
        `actor` of the call (who asks)."""
        return await self.call(REPOS, "query_audit", {"query": _clean(query), "actor": actor})

    async def recent_pushes(self, actor: str, limit: int = 10) -> list[dict]:
        return await self.call(REPOS, "recent_pushes", {"limit": limit, "actor": actor})

    async def counts(self, actor: str, *, pushes: bool = True) -> dict:
        """The dashboard's figures (Counts); `pushes=False` leaves the costly
        one, the pushes to what a user may read, uncounted (None)."""
        return await self.call(REPOS, "counts", {"pushes": pushes, "actor": actor})

    async def cluster(self) -> list[dict]:
        """The nodes am has seen: [{node, up, state, since, errors...}], am first."""
        found = await self.call(OBSERVER, "cluster", {})
        nodes = found.get("nodes", []) if isinstance(found, dict) else list(found or [])
        return [{**n, "up": n.get("state") == "up" or n.get("up") is True} for n in nodes]


def _who(actor: str | None) -> str:
    return actor or SYSTEM
