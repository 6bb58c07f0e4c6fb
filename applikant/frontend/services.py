"""af's services for ``as``, ``keys-for`` and am: ``af_auth`` and ``af_repo_manager``.

``af_auth`` (asked by ``as`` and ``keys-for`` on every login):

* ``check_access({"user", "repo", "access"})`` -> ``{"allowed", "reason",
  "level", "path"}``: am decides; af adds the absolute path of the repo on
  this host (creating it first if am knows it and the disk does not yet).
* ``info({"user"})`` -> ``{"host", "login", "repos": [{"repo", "level"}]}``.
* ``keys_for({"login", "fingerprint"})`` -> ``{"lines"}``: the forced-command
  line for that key, from am's fingerprint index; ``""`` when none.

When am cannot be reached, ``check_access`` answers "no" with a reason at once
(never after the caller's deadline), so ``as`` can tell the user why. Below the
disk reserve (:mod:`applikant.diskspace`) a push is refused here, before its
pack is uploaded; reads go on.

``af_repo_manager`` (asked by am and admins): ``create_repo``,
``list_repos``, ``rename_repo``, ``delete_repo``, ``check_repo`` on this
host's repo root.
"""

from __future__ import annotations

from typing import Any

import trio

from applikant.amclient import AmClient, AmRefused, AmUnavailable
from applikant.diskspace import Reserve
from applikant.frontend import authkeys
from applikant.frontend.mirror import Mirror
from applikant.frontend.repodisk import (
    CommandRefused,
    RepoDisk,
    RepoDiskError,
    RepoExists,
    RepoNotFound,
)
from applikant.frontend.sshcommand import check_repo
from applikant.logs import EventLog
from applikant.node.errors import BadRequest, NotFound, ServiceError
from applikant.node.node import CallContext

__all__ = ["Auth", "RepoManager"]

log = EventLog("af")

#: af must answer ``as`` (deadline 2.5 s) even when am hangs.
AM_TIMEOUT = 2.0
ACCESS = ("read", "write")


def _user(args: Any) -> str:
    user = args.get("user") if isinstance(args, dict) else None
    rest = user[5:] if isinstance(user, str) and user.startswith("user-") else ""
    if not rest or not rest.isdigit() or not rest.isascii():
        raise BadRequest("user must look like user-42")
    return user


def _repo(value: Any) -> str:
    if not isinstance(value, str):
        raise BadRequest("repo must be owner/name")
    try:
        check_repo(value)
    except CommandRefused as exc:
        raise BadRequest(exc.message) from None
    return value


class Auth:
    """The ``af_auth`` service."""

    def __init__(
        self,
        link: AmClient,
        disk: RepoDisk,
        mirror: Mirror,
        host: str,
        as_command: str,
        reserve: Reserve | None = None,
    ) -> None:
        self.link = link
        self.disk = disk
        self.mirror = mirror
        self.host = host
        self.as_command = as_command
        self.reserve = reserve if reserve is not None else Reserve([], 0)

    def handlers(self) -> dict[str, Any]:
        return {"check_access": self.check_access, "info": self.info, "keys_for": self.keys_for}

    async def check_access(self, ctx: CallContext, args: Any) -> dict[str, Any]:
        user, repo = _user(args), _repo(args.get("repo"))
        access = args.get("access")
        if access not in ACCESS:
            raise BadRequest("access must be read or write")
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
        try:
            path = self.disk.path(repo)
            if not self.disk.exists(repo):
                path = await self._create_now(repo)
        except (CommandRefused, RepoDiskError, AmUnavailable, AmRefused, OSError) as exc:
            log.error("repo_unavailable", repo=repo, reason=str(exc))
            return _no(f"repository {repo} is not available on this host")
        return {
            "allowed": True,
            "reason": str(decision.get("reason", "")),
            "level": decision.get("level"),
            "path": path,
        }

    async def _create_now(self, repo: str) -> str:
        # am knows the repo, the disk does not yet: its creation event is on
        # its way. Do not make the user wait for it.
        found = await self.link.call("am_repo_db", "get_repo", {"repo": repo}, timeout=AM_TIMEOUT)
        if not isinstance(found, dict):
            raise RepoNotFound(f"no repository {repo}")
        return await trio.to_thread.run_sync(self.mirror.ensure_now, found)

    async def info(self, ctx: CallContext, args: Any) -> dict[str, Any]:
        user = _user(args)
        try:
            repos = await self.link.call(
                "am_repo_db", "list_readable", {"user": user}, timeout=AM_TIMEOUT
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
        for entry in repos if isinstance(repos, list) else []:
            if isinstance(entry, dict):
                out.append({"repo": entry.get("repo"), "level": entry.get("level") or "read"})
        return {"host": self.host, "login": login, "repos": out}

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
            [(str(key.get("user")), str(key.get("public_key")))], self.as_command
        )
        return {"lines": lines}


def _no(reason: str) -> dict[str, Any]:
    return {"allowed": False, "reason": reason, "level": None, "path": None}


class RepoManager:
    """The ``af_repo_manager`` service: repos on this host's disk."""

    def __init__(self, disk: RepoDisk, mirror: Mirror) -> None:
        self.disk = disk
        self.mirror = mirror

    def handlers(self) -> dict[str, Any]:
        return {
            "create_repo": self.create_repo,
            "list_repos": self.list_repos,
            "rename_repo": self.rename_repo,
            "delete_repo": self.delete_repo,
            "check_repo": self.check_repo,
        }

    async def create_repo(self, ctx: CallContext, args: Any) -> dict[str, str]:
        """``{"repo", "default_branch"?, "id"?}`` -> ``{"path"}``; idempotent."""
        args = args if isinstance(args, dict) else {"repo": args}
        repo = _repo(args.get("repo") or args.get("full_name"))
        spec = {
            "full_name": repo,
            "id": args.get("id") or "",
            "default_branch": args.get("default_branch") or "main",
        }
        path = await self._run(self.mirror.ensure_now, spec)
        return {"path": path}

    async def list_repos(self, ctx: CallContext, args: Any) -> list[str]:
        return await self._run(self.disk.list)

    async def rename_repo(self, ctx: CallContext, args: Any) -> dict[str, str]:
        old, new = _repo(args.get("old")), _repo(args.get("new"))
        return {"path": await self._run(self.disk.rename, old, new)}

    async def delete_repo(self, ctx: CallContext, args: Any) -> None:
        repo = _repo(args.get("repo") if isinstance(args, dict) else args)
        await self._run(self.disk.delete, repo)

    async def check_repo(self, ctx: CallContext, args: Any) -> list[str]:
        repo = _repo(args.get("repo") if isinstance(args, dict) else args)
        return await self._run(self.disk.check_hooks, repo)

    async def _run(self, fn: Any, *args: Any) -> Any:
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except RepoNotFound as exc:
            raise NotFound(str(exc)) from None
        except RepoExists as exc:
            raise ServiceError(str(exc), kind="conflict") from None
        except CommandRefused as exc:
            raise BadRequest(exc.message) from None
        except RepoDiskError as exc:
            raise ServiceError(str(exc), kind="repo_error") from None
