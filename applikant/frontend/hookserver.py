"""``af_hook_server``: a hook call from ``ah``, checked, enriched and forwarded to am.

``ah`` sends what git gave it: the hook name, its stdin, the ``GIT_*`` /
``APPLIKANT_*`` environment and the working directory (the repository).
af turns that into am's hook data (``am_hook_api.handle_hook``)::

    {"hook", "repo": "owner/name", "user": "user-42", "node": <af's node>,
     "event_id", "refs": [{"ref", "old", "new", "ff"}], "git_dir"}

* The repository is the working directory, which must be a repo under the root;
  ``APPLIKANT_REPO`` (set by ``as``) must name that same repo.
* ``ff`` (pre-receive, branch updates) is found with git on this host, inside
  the push's quarantine (``GIT_OBJECT_DIRECTORY``,
  ``GIT_ALTERNATE_OBJECT_DIRECTORIES``, confined to the repo): the new objects
  are not in the repository yet when pre-receive runs. Only when am asks for it
  (``need_ff``: a protected branch's decision depends on it, and am cannot ask
  git itself); the call then goes to am a second time, with the answers.
* pre-receive fails closed: am unreachable means the push is refused.
* post-receive: ``build`` per updated branch says whether its new commit has
  ``.applikant/build.sh`` (am then queues a build and says ``build #N queued``);
  ``commits`` and ``total_commits`` describe what the branch brought, for the
  webhooks' payloads (:mod:`applikant.frontend.pushinfo`).
* Write ahead: once am approves a push, its intent is made durable in af's
  spool (:func:`applikant.frontend.spool.write_intent`) *before* the answer
  lets git move any ref. If it cannot be written (a full disk, an I/O error)
  the push is refused in words and nothing changes. Below the disk reserve
  (:mod:`applikant.diskspace`) pushes are refused before am is even asked.
* post-receive cannot fail a push that already happened. It is delivered to am
  at once; when that fails for any reason it is queued and retried
  (:mod:`applikant.frontend.delivery`), and its intent stays until am has it.
  Both hooks of one push carry the same ``event_id`` (:mod:`pushid`), so am
  records the push once however many copies reach it.
"""

from __future__ import annotations

import errno
import os
import time
from typing import Any

import trio

from applikant import gitasync, gitops
from applikant.amclient import AmClient, AmRefused, AmUnavailable
from applikant.diskspace import Reserve
from applikant.frontend import pushinfo, spool
from applikant.frontend.delivery import Delivery, Outcome
from applikant.frontend.repodisk import CommandRefused, RepoDisk
from applikant.fsutil import real_path
from applikant.logs import EventLog
from applikant.node.node import CallContext

__all__ = ["ZERO_IDS", "HookRefused", "HookServer", "parse_refs"]

log = EventLog("af")

AM_TIMEOUT = {"pre-receive": 15.0, "post-receive": 5.0}
ZERO_IDS = frozenset({"0" * 40, "0" * 64})
_HEX = frozenset("0123456789abcdef")
GIT_PARALLEL = 8  # git processes at once for one push
_DIGITS = frozenset("0123456789")
GIT_TIMEOUT = 30.0
BUILD_SCRIPT = ".applikant/build.sh"  # a branch whose commit has it gets a build


class HookRefused(ValueError):
    """The hook call cannot be acted on; ``str()`` is one line for the pusher."""


def _is_oid(value: str) -> bool:
    return len(value) in (40, 64) and all(c in _HEX for c in value)


def parse_refs(stdin: str) -> list[dict[str, Any]]:
    """``<old> <new> <ref>`` lines (pre-/post-receive stdin) as ref updates.

    Raises :class:`HookRefused` on a malformed line. ``ff`` is None until
    filled in.
    """
    refs = []
    for line in stdin.splitlines():
        if not line:
            continue
        parts = line.split(" ")
        if (
            len(parts) != 3
            or not _is_oid(parts[0])
            or not _is_oid(parts[1])
            or not parts[2].startswith("refs/")
        ):
            raise HookRefused("malformed ref update from git")
        refs.append({"ref": parts[2], "old": parts[0], "new": parts[1], "ff": None})
    return refs


def _valid_user(user: object) -> bool:
    rest = user[5:] if isinstance(user, str) and user.startswith("user-") else ""
    return 0 < len(rest) <= 20 and all(c in _DIGITS for c in rest)


def _inside(path: str, top: str) -> bool:
    """Whether `path`, symlinks resolved, is `top` (already resolved) or under it."""
    real = real_path(path)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


class HookServer:
    """Serves ``handle_hook``; its :attr:`delivery` delivers what waits. See the
    module docstring. ``reserve`` covers the repo root and the spool."""

    def __init__(
        self,
        link: AmClient,
        disk: RepoDisk,
        spool_dir: str,
        node_name: str,
        reserve: Reserve | None = None,
    ) -> None:
        self.link = link
        self.disk = disk
        self.spool_dir = spool_dir
        self.node_name = node_name
        self.reserve = reserve if reserve is not None else Reserve([], 0)
        self.delivery = Delivery(link, spool_dir, self.build, self.post_receive_data)

    @property
    def delivered(self) -> int:
        """Events delivered from the spool and from intents (tests, status)."""
        return self.delivery.delivered

    # ---- the service ------------------------------------------------------

    async def handle_hook(self, ctx: CallContext, request: Any) -> dict[str, Any]:
        """``af_hook_server.handle_hook``: ``{"ok": bool, "messages": [str]}``."""
        hook = request.get("hook") if isinstance(request, dict) else None
        if hook not in AM_TIMEOUT:
            return {
                "ok": hook is not None and str(hook).startswith("post-"),
                "messages": [f"applikant: af does not handle the {hook!r} hook"],
            }
        try:
            data = self.build(request)
            if hook == "pre-receive":
                # ff only when am says a decision needs it (a protected branch)
                data["env"] = self._quarantine_env(request.get("env") or {}, data["git_dir"])
                data["ff_on_request"] = True
            else:
                await self._mark_builds(data, request.get("env") or {})
        except HookRefused as exc:
            log.warning("hook_refused", hook=hook, reason=str(exc))
            return {"ok": hook == "post-receive", "messages": [f"applikant: {exc}"]}
        if hook == "pre-receive":
            return await self._pre_receive(request, data)
        return await self._post_receive(request, data)

    async def _pre_receive(self, request: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        shortfall = self.reserve.shortfall()
        if shortfall is not None:
            log.warning("push_refused_disk_reserve", repo=data["repo"], reason=str(shortfall))
            return _refused(
                f"the git host's disk is nearly full ({shortfall}); clones and fetches go on"
            )
        if not self.link.up:
            return _refused("the manager (am) cannot be reached")
        try:
            reply = await self.link.call(
                "am_hook_api", "handle_hook", data, timeout=AM_TIMEOUT["pre-receive"]
            )
            need = reply.get("need_ff") if isinstance(reply, dict) else None
            if need:  # (the second time, am decides with what it is given)
                data = {**data, "refs": [dict(r) for r in data["refs"]], "ff_on_request": False}
                await self._fill_ff(data, need)
                reply = await self.link.call(
                    "am_hook_api", "handle_hook", data, timeout=AM_TIMEOUT["pre-receive"]
                )
        except AmUnavailable as exc:
            return _refused(str(exc))
        except AmRefused as exc:
            log.error("pre_receive_error", repo=data["repo"], kind=exc.kind, reason=exc.message)
            return _refused(f"the manager refused the request ({exc.kind}): {exc.message}")
        verdict = _verdict(reply)
        if verdict["ok"]:
            record = {"request": request, "push": _push(request), "time": time.time()}
            try:
                path = await trio.to_thread.run_sync(
                    spool.write_intent, self.spool_dir, data["event_id"], record
                )
            except (OSError, ValueError) as exc:
                log.error(
                    "intent_failed", repo=data["repo"], event_id=data["event_id"], reason=str(exc)
                )
                return {
                    "ok": False,
                    "messages": [f"applikant: push refused: {_disk_words(exc)}; nothing changed"],
                }
            self.delivery.watch(path)  # in case its post-receive never reaches am
        return verdict

    async def _post_receive(self, request: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        event_id = data["event_id"]
        intent = spool.intent_path(self.spool_dir, event_id)
        outcome = await self.delivery.send(data)
        if outcome.state == "recorded":
            await trio.to_thread.run_sync(spool.drop_intent, self.spool_dir, event_id)
            self.delivery.forget(intent)
            return {"ok": True, "messages": _verdict(outcome.reply)["messages"]}
        record = {"request": request, "spooled_by": "af"}
        try:
            if outcome.state == "refused":
                await trio.to_thread.run_sync(
                    spool.bury, self.spool_dir, event_id, record, outcome.reason
                )
            else:
                queued = await trio.to_thread.run_sync(
                    spool.write, self.spool_dir, event_id, record
                )
                self.delivery.queued(queued, outcome.reason)
            await trio.to_thread.run_sync(spool.drop_intent, self.spool_dir, event_id)
            self.delivery.forget(intent)
        except (OSError, ValueError) as exc:
            has_intent = await trio.to_thread.run_sync(os.path.exists, intent)
            if not has_intent:
                log.error("spool_failed", repo=data["repo"], event_id=event_id, reason=str(exc))
                return {
                    "ok": True,
                    "messages": [f"applikant: the push is done but could not be recorded: {exc}"],
                }
            log.warning("spool_failed_intent_kept", event_id=event_id, reason=str(exc))
            self.delivery.watch(intent)  # settled against the refs once the push is over
        return {"ok": True, "messages": [_later_words(outcome)]}

    async def post_receive_data(self, request: dict[str, Any]) -> dict[str, Any]:
        """am's hook data for a (spooled or settled) post-receive request, builds
        marked; :class:`HookRefused` (a ``ValueError``) when it does not hold."""
        data = self.build(request)
        await self._mark_builds(data, request.get("env") or {})
        return data

    # ---- building am's hook data -----------------------------------------------

    def build(self, request: dict[str, Any]) -> dict[str, Any]:
        """am's hook data from ``ah``'s request; :class:`HookRefused` if it does not hold."""
        env = request.get("env")
        cwd = request.get("cwd")
        stdin = request.get("stdin")
        if not isinstance(env, dict) or not isinstance(cwd, str) or not isinstance(stdin, str):
            raise HookRefused("malformed hook call")
        if not os.path.isabs(cwd):
            raise HookRefused("the hook ran outside a repository")
        repo = env.get("APPLIKANT_REPO")
        if not isinstance(repo, str) or not repo:
            repo = self._repo_of(cwd)
        try:
            git_dir = self.disk.path(repo)
        except CommandRefused as exc:
            raise HookRefused(exc.message) from None
        if cwd != git_dir and real_path(git_dir) != real_path(cwd):
            raise HookRefused(f"the hook ran in a different repository than {repo}")
        user = env.get("APPLIKANT_USER")
        if not _valid_user(user):
            raise HookRefused("pushes to managed repositories go through Applikant (no user given)")
        event_id = request.get("event_id")
        if not isinstance(event_id, str) or not event_id:
            raise HookRefused("malformed hook call (no event id)")
        return {
            "hook": request["hook"],
            "repo": repo,
            "user": user,
            "node": self.node_name,
            "event_id": event_id,
            "refs": parse_refs(stdin),
            "git_dir": git_dir,
        }

    def _repo_of(self, cwd: str) -> str:
        rel = os.path.relpath(real_path(cwd), real_path(self.disk.root))
        parts = rel.split(os.sep)
        if len(parts) != 2 or not parts[1].endswith(".git"):
            raise HookRefused("the hook ran outside the repository root")
        return f"{parts[0]}/{parts[1][:-4]}"

    async def _fill_ff(self, data: dict[str, Any], refs: object) -> None:
        """Set ``ff`` on the updates of existing refs am named (``need_ff``), asked
        of git inside the push's quarantine (``data["env"]``, confined to the repo).
        """
        git_dir, quarantine = data["git_dir"], data["env"]
        names = set(refs) if isinstance(refs, list) else set()
        wanted = [
            r
            for r in data["refs"]
            if r["ref"] in names and r["old"] not in ZERO_IDS and r["new"] not in ZERO_IDS
        ]
        limiter = trio.CapacityLimiter(GIT_PARALLEL)

        async def fill(ref: dict[str, Any]) -> None:
            async with limiter:
                ref["ff"] = await is_fast_forward(git_dir, ref["old"], ref["new"], quarantine)

        async with trio.open_nursery() as nursery:
            for ref in wanted:
                nursery.start_soon(fill, ref)

    async def _mark_builds(self, data: dict[str, Any], env: dict[str, Any]) -> None:
        """post-receive: set ``build`` on each updated branch (not deletions, not
        tags): whether its new commit has ``.applikant/build.sh``, for am to
        queue a build. Asked of git on this host, in the quarantine if any."""
        git_dir = data["git_dir"]
        quarantine = self._quarantine_env(env if isinstance(env, dict) else {}, git_dir)
        wanted = [
            r
            for r in data["refs"]
            if r["ref"].startswith("refs/heads/") and r["new"] not in ZERO_IDS
        ]
        for ref in data["refs"]:
            ref["build"] = False
        limiter = trio.CapacityLimiter(GIT_PARALLEL)

        async def mark(ref: dict[str, Any]) -> None:
            async with limiter:
                found = await gitasync.has_path(
                    git_dir, ref["new"], BUILD_SCRIPT, quarantine, GIT_TIMEOUT
                )
                ref["build"] = found is True

        async def describe(ref: dict[str, Any]) -> None:
            async with limiter:
                pushed = await pushinfo.describe(
                    git_dir, ref["ref"], ref["old"], ref["new"], quarantine
                )
                if pushed is not None:
                    ref.update(pushed)

        async with trio.open_nursery() as nursery:  # both questions at once, per branch
            for ref in wanted:
                nursery.start_soon(mark, ref)
                nursery.start_soon(describe, ref)

    def _quarantine_env(self, env: dict[str, Any], git_dir: str) -> dict[str, str]:
        """The quarantine variables of the hook, made absolute and confined to the repo."""
        out: dict[str, str] = {}
        top = ""
        for var in gitops.QUARANTINE_VARS:
            value = env.get(var)
            if not isinstance(value, str) or not value:
                continue
            paths = (
                [os.path.join(git_dir, p) for p in value.split(":")]
                if var == "GIT_ALTERNATE_OBJECT_DIRECTORIES"
                else [os.path.join(git_dir, value)]
            )
            top = top or real_path(git_dir)
            if not all(_inside(p, top) for p in paths):
                raise HookRefused("object directories outside the repository")
            out[var] = ":".join(paths)
        return out

    # ---- delivery -----------------------------------------------------------

    async def deliver_spool(self) -> int:
        """One delivery pass now (tests); how many events am recorded."""
        return await self.delivery.settle()


def _push(request: dict[str, Any]) -> dict[str, int] | None:
    """The push's receive-pack as ``as``/``ah`` named it (:mod:`pushid`), if they did."""
    push = request.get("push")
    if isinstance(push, dict):
        pid, start = push.get("pid"), push.get("start")
        if isinstance(pid, int) and isinstance(start, int) and pid > 0:
            return {"pid": pid, "start": start}
    return None


def _disk_words(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the git host's disk is full"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"the git host cannot record the push ({reason})"


def _later_words(outcome: Outcome) -> str:
    if outcome.state == "refused":
        return (
            f"applikant: the push is done, but the manager refused to record it ({outcome.reason}); "
            "it is kept for the admin (applikant doctor)"
        )
    if outcome.unavailable:
        return "applikant: the push is done; it will be recorded when the manager is back"
    return (
        f"applikant: the push is done; the manager could not record it yet ({outcome.reason}); "
        "it will be retried"
    )


def _refused(reason: str) -> dict[str, Any]:
    return {"ok": False, "messages": [f"applikant: push refused, nothing changed: {reason}"]}


def _verdict(reply: Any) -> dict[str, Any]:
    if not isinstance(reply, dict):
        return _refused("the manager gave no verdict")
    messages = reply.get("messages")
    messages = [str(m) for m in messages] if isinstance(messages, list) else []
    messages = [m if m.startswith("applikant:") else f"applikant: {m}" for m in messages]
    return {"ok": reply.get("ok") is True, "messages": messages}


async def is_fast_forward(git_dir: str, old: str, new: str, env: dict[str, str]) -> bool | None:
    """Whether ``old`` is an ancestor of ``new`` (:mod:`applikant.gitops`'s question,
    asked without blocking af's loop); None when git cannot tell.

    ``env`` holds the quarantine variables only; the git process dies with the
    task when the hook call is cancelled (``ah`` gave up).
    """
    return await gitasync.is_fast_forward(git_dir, old, new, env, GIT_TIMEOUT)
