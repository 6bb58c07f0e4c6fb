"""af's service for ``as`` and ``keys-for``: ``af_auth``.

``af_auth`` (asked by ``as`` and ``keys-for`` on every login):

* ``check_access({"user", "repo", "access", "key"?})`` -> ``{"allowed", "reason",
  "level", "path", "repo"}``: am decides; af adds the absolute path of the repo
  in the shared store (having the managing af create it first if am knows it
  and the store does not yet) and its canonical name (``ALICE/Secret`` is
  ``alice/secret``). A repository that is not its own directory under the root
  (a symlink) is refused, and an af whose repo root was refused
  (repomanager.py) answers no, with the reason. ``key`` (the fingerprint the
  forced command names) is noted as used when access is granted;
  :class:`~applikant.frontend.keyuse.KeyUse` tells am in batches.
* ``info({"user"})`` -> ``{"host", "login", "repos": [{"repo", "level"}], "more"}``:
  the first :data:`INFO_REPOS` repositories the user can read (oldest first;
  ``more`` when there are others), one page from am whatever they can read.
* ``keys_for({"login", "fingerprint"})`` -> ``{"lines"}``: the forced-command
  line for that key, from am's fingerprint index; ``""`` when none.

When am cannot be reached, ``check_access`` answers "no" with a reason at once
(never after the caller's deadline), so ``as`` can tell the user why. Below the
disk reserve (:mod:`applikant.diskspace`) a push is refused here, before its
pack is uploaded; reads go on.

``af_repo_manager`` is in repomanager.py.
"""

from __future__ import annotations

from typing import Any

from applikant.amclient import AmClient, AmRefused, AmUnavailable
from applikant.diskspace import Reserve
from applikant.frontend import authkeys
from applikant.frontend.keyuse import KeyUse
from applikant.frontend.repodisk import CommandRefused, RepoDisk, RepoDiskError, RepoNotFound
from applikant.frontend.repomanager import RepoManager, StoreRole, repo_arg
from applikant.logs import EventLog
from applikant.node.errors import BadRequest, ServiceError
from applikant.node.node import CallContext

__all__ = ["Auth"]

log = EventLog("af")

#: af must answer ``as`` (deadline 2.5 s) even when am hangs.
AM_TIMEOUT = 2.0
ACCESS = ("read", "write")
#: Repositories `info` lists; a user who reads 10,000 gets these and "more".
INFO_REPOS = 100


def _user(args: Any) -> str:
    user = args.get("user") if isinstance(args, dict) else None
    if not isinstance(user, str) or not user.startswith("user-"):
        raise BadRequest("user must look like user-42")
    rest = user[5:]
    if not rest.isdigit() or not rest.isascii():
        raise BadRequest("user must look like user-42")
    return user


class Auth:
    """The ``af_auth`` service."""

    def __init__(
        self,
        link: AmClient,
        disk: RepoDisk,
        role: StoreRole,
        repos: RepoManager,
        host: str,
        as_command: str,
        key_use: KeyUse | None = None,
        reserve: Reserve | None = None,
    ) -> None:
        self.key_use = key_use
        self.link = link
        self.disk = disk
        self.role = role
        self.repos = repos
        self.host = host
        self.as_command = as_command
        self.reserve = reserve if reserve is not None else Reserve([], 0)

    def handlers(self) -> dict[str, Any]:
        return {"check_access": self.check_access, "info": self.info, "keys_for": self.keys_for}

    async def check_access(self, ctx: CallContext, args: Any) -> dict[str, Any]:
        user, repo = _user(args), repo_arg(args.get("repo"))
        access = args.get("access")
        if access not in ACCESS:
            raise BadRequest("access must be read or write")
        if not self.role.serving:
            return _no(self.role.why_not())
        shortfall = self.reserve.shortfall() if access == "write" else None
        if shortfall is not None:
            return _no(
                f"the git host's disk is nearly full ({shortfall}): pushes are refused "
                "until space is freed; clones and fetches go on"
            )
        if not self.link.up:
            return _no("the manager (am) cannot be reached; try again in a moment")
        try:
            # audit: a refused SSH attempt is recorded by am as access.denied
            decision = await self.link.call(
                "am_repo_db",
                "check_access",
                {"user": user, "repo": repo, "access": access, "audit": True},
                timeout=AM_TIMEOUT,
            )
        except AmUnavailable as exc:
            return _no(f"{exc}; try again in a moment")
        except AmRefused as exc:
            return _no(exc.message)
        if not isinstance(decision, dict) or decision.get("allowed") is not True:
            reason = decision.get("reason") if isinstance(decision, dict) else None
            return _no(str(reason or f"{user} has no {access} access to {repo}"))
        # am finds names case-insensitively; the disk, the hooks and the audit
        # log use the canonical one (ALICE/Secret is alice/secret).
        canonical = decision.get("repo")
        if isinstance(canonical, str) and canonical.casefold() == repo.casefold():
            repo = canonical
        try:
            path = self.disk.path(repo)
            if not self.disk.exists(repo):
                path = await self._create_now(repo)
        except (CommandRefused, RepoDiskError, AmUnavailable, AmRefused, OSError) as exc:
            log.error("repo_unavailable", repo=repo, reason=str(exc))
            return _no(f"repository {repo} is not available on this host")
        if self.key_use is not None and authkeys.valid_fingerprint(args.get("key")):
            self.key_use.used(args["key"])
        return {
            "allowed": True,
            "reason": str(decision.get("reason", "")),
            "level": decision.get("level"),
            "path": path,
            "repo": repo,
        }

    async def _create_now(self, repo: str) -> str:
        # am knows the repo, the store does not yet: its creation event is on
        # its way to the managing af. Do not make the user wait for it.
        found = await self.link.call("am_repo_db", "get_repo", {"repo": repo}, timeout=AM_TIMEOUT)
        if not isinstance(found, dict):
            raise RepoNotFound(f"no repository {repo}")
        return await self.repos.ensure(found)

    async def info(self, ctx: CallContext, args: Any) -> dict[str, Any]:
        user = _user(args)
        try:
            page = await self.link.call(
                "am_repo_db",
                "list_readable",
                {"user": user, "limit": INFO_REPOS},
                timeout=AM_TIMEOUT,
            )
        except AmUnavailable as exc:
            raise ServiceError(f"{exc}; try again in a moment", kind="unavailable") from None
        login = None
        try:
            found = await self.link.call(
                "am_user_db", "get_user", {"user": user}, timeout=AM_TIMEOUT
            )
            login = found.get("login") if isinstance(found, dict) else None
        except (AmUnavailable, AmRefused):
            pass  # the greeting falls back to the id
        out = []
        repos = page.get("items") if isinstance(page, dict) else None
        for entry in repos if isinstance(repos, list) else []:
            if isinstance(entry, dict):
                out.append({"repo": entry.get("repo"), "level": entry.get("level") or "read"})
        more = isinstance(page, dict) and page.get("next") is not None
        return {"host": self.host, "login": login, "repos": out, "more": more}

    async def keys_for(self, ctx: CallContext, args: Any) -> dict[str, str]:
        fingerprint = args.get("fingerprint") if isinstance(args, dict) else None
        if (
            not isinstance(fingerprint, str)
            or not fingerprint.startswith("SHA256:")
            or len(fingerprint) > 100
        ):
            raise BadRequest("fingerprint must be SHA256:...")
        try:
            key = await self.link.call(
                "am_user_db", "find_key", {"fingerprint": fingerprint}, timeout=AM_TIMEOUT
            )
        except AmUnavailable as exc:
            raise ServiceError(str(exc), kind="unavailable") from None
        if not isinstance(key, dict):
            return {"lines": ""}
        lines = authkeys.keys_for_output(
            [(str(key.get("user")), str(key.get("public_key")), fingerprint)], self.as_command
        )
        return {"lines": lines}


def _no(reason: str) -> dict[str, Any]:
    return {"allowed": False, "reason": reason, "level": None, "path": None}
